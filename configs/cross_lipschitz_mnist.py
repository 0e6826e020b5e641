"""Cross-Lipschitz vs weight decay vs dropout on MNIST (issue 4's results).

The grid behind `docs/results/cross_lipschitz_mnist.md`: the one-hidden-layer
network and the pre-activation ResNet-32, each with no regularizer, weight
decay, dropout and Cross-Lipschitz, with and without the paper's adversarial
training. The MLP follows the original docstring's setting (batch 64, lr 0.2,
lambda 1e-4, plus lambda 1e-3 for the two penalties) with fewer epochs than
its 100, to fit a 2-core CPU. The ResNet half of the grid (20 epochs) is
meant for a GPU: `--only=nn_type=resnet` trains just that half. `get_config(quick=True)` shrinks everything for
the smoke test. `experiment` names the kind of run `apps/sweep.py` dispatches to.
"""


def get_config(quick=False):
    mlp = dict(nn_type="mlp1layer", batch_size=64, lr=0.2, n_epochs=20)
    resnet = dict(nn_type="resnet", batch_size=128, lr=0.2, n_epochs=20)
    regs = [
        dict(reg_type="no", lmbd=0.0),
        dict(reg_type="weight_decay", lmbd=1e-4),
        dict(reg_type="dropout", lmbd=0.0, keep_hidden=0.5),
        dict(reg_type="cross_lipschitz", lmbd=1e-4),
    ]
    runs = []
    for net in (mlp, resnet):
        for reg in regs:
            for adv in (False, True):
                runs.append(dict(dataset="mnist", **net, **reg, adv_train_flag=adv))
    # A ten times stronger weight for the two penalties, to compare the
    # regularizers at more than one strength.
    for reg in ("weight_decay", "cross_lipschitz"):
        runs.append(dict(dataset="mnist", **mlp, reg_type=reg, lmbd=1e-3, adv_train_flag=False))
    evaluation = dict(n_eval=300)
    if quick:
        runs = [
            dict(run, n_epochs=1, n_train=256, batch_size=64)
            for run in runs
            if run["nn_type"] == "mlp1layer" and not run["adv_train_flag"]
        ][:2]
        evaluation = dict(n_eval=20)
    return dict(experiment="cross_lipschitz", experiment_name="cl_mnist", runs=runs,
                evaluation=evaluation)
