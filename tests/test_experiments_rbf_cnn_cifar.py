"""The RBF-CNN pipeline on CIFAR-10's shapes: EM templates on 3-channel
3x3 patches, rCNN with the VGG-16 classifier (`classifier=`), and the test
battery at the paper's CIFAR bound (L-inf 0.031)."""

import os

import numpy as np

import tfrobust
from tfrobust import rbf
from tfrobust.experiments.rbf_cnn import RCNNConfig, train_rcnn
from tfrobust.experiments.rbf_cnn_eval import EvalConfig, evaluate_rcnn, parse_threat
from tfrobust.experiments.rbf_layer import train_rbf_layer


def test_cifar_templates_vgg_rcnn_and_the_0031_battery(data_dir, tmp_path):
    path = str(tmp_path / "cifar.npz")
    summary = train_rbf_layer(dataset="cifar10", data_dir=data_dir, n_train=40, out=path, verbose=0,
                              em_config=rbf.EMConfig(batch_images=10, batch_count=2, total_steps=8,
                                                     non_param_steps=8, desired_templates=5.0))
    templates = rbf.load_templates(path)
    assert templates.means.shape[1:] == (3, 3, 3) and summary["templates"] == templates.num_templates >= 1

    out = str(tmp_path / "rcnn")
    metrics = train_rcnn(RCNNConfig(dataset="cifar10", data_dir=data_dir, templates=path, out_dir=out,
                                    classifier="vgg16_cifar", optimizer="nesterov", learning_rate=0.01,
                                    n_train=16, n_eval=8, epochs=1, batch_size=16, verbose=0))
    assert metrics["config"]["classifier"] == "vgg16_cifar" and len(metrics["history"]["loss"]) == 1
    model = tfrobust.load_model(os.path.join(out, "model.keras"))
    # The VGG-16 (13 convolutions) sits behind the front end, on 32x32x3.
    convs = [layer for layer in model.classifier.layers if "conv" in type(layer).__name__.lower()]
    assert len(convs) == 13 and tuple(model.classifier.input_shape[1:]) == (32, 32, 3)

    assert parse_threat("linf:0.031") == (np.inf, 0.031)
    results = evaluate_rcnn(EvalConfig(model=os.path.join(out, "model.keras"), dataset="cifar10",
                                       data_dir=data_dir, out_dir=str(tmp_path / "test"), n_eval=6, n_adaptive=2,
                                       threats=("linf:0.031",), attacks=("FGSM", "PGD"), steps=2, eot_samples=2,
                                       adaptive_steps=1, samples=2, beta2_sweep=(0.0, 1.75), batch_size=6))
    static = results["static"]["linf:0.031"]
    assert set(static["per_attack"]) == {"FGSM", "PGD-2"}
    assert list(static["worst_case"].values())[0] <= min(static["per_attack"].values()) + 1e-9
    assert set(results["static_judged"]["1.75"]["linf:0.031"]["per_attack"]) == {"FGSM", "PGD-2"}
    assert "BPDA+EoT PGD" in results["adaptive"]["linf:0.031"]["per_attack"]
