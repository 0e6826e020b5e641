"""A reduced ResNet half of the Cross-Lipschitz grid, sized for a 2-core CPU (issue 15).

The pre-activation ResNet-32 with each regularizer (none, weight decay,
dropout, Cross-Lipschitz) and no adversarial training, on the first
`N_TRAIN` MNIST training images. The paper's setting (lr 0.2, batch 128,
200 epochs on all images) needs a GPU: a Cross-Lipschitz ResNet step costs
~12x a plain one. At this scale a batch of 128 gives too few updates to
train (a 2,000-image, 3-epoch trial reached 22% test accuracy), so the
batch is 32 with lr 0.05 (the paper's lr scaled by 32/128), the original
piecewise schedule kept. Upper bounds only: Theorem 2.1's certificate
exists for the one-hidden-layer network alone.
"""

N_TRAIN = 3000


def get_config(quick=False):
    net = dict(dataset="mnist", nn_type="resnet", batch_size=32, lr=0.05, n_epochs=8,
               n_train=N_TRAIN, adv_train_flag=False, seed=5)
    regs = [
        dict(reg_type="no", lmbd=0.0),
        dict(reg_type="weight_decay", lmbd=1e-4),
        dict(reg_type="dropout", lmbd=0.0, keep_hidden=0.5),
        dict(reg_type="cross_lipschitz", lmbd=1e-4),
    ]
    runs = [dict(net, **reg) for reg in regs]
    evaluation = dict(n_eval=100)
    if quick:
        runs = [dict(run, n_epochs=1, n_train=64) for run in runs[:1]]
        evaluation = dict(n_eval=8)
    return dict(experiment="cross_lipschitz", experiment_name="cl_mnist_resnet_cpu", runs=runs,
                evaluation=evaluation)
