"""Reusable test harnesses: shared attack assertions and a small trained model
(`attack_test`), the Keras layer contract (`layer_test.run_layer_test`) and
statistical asserts with binomial tolerances (`stats`)."""

from tfrobust.testing.attack_test import TrainedModel
from tfrobust.testing.attack_test import accuracy
from tfrobust.testing.attack_test import assert_accuracy_drops
from tfrobust.testing.attack_test import assert_eager_matches_compiled
from tfrobust.testing.attack_test import assert_eps_zero_returns_x
from tfrobust.testing.attack_test import assert_inside_threat
from tfrobust.testing.attack_test import assert_targeted_hits
from tfrobust.testing.attack_test import linear_two_class_model
from tfrobust.testing.attack_test import run_attack_test
from tfrobust.testing.attack_test import small_trained_mnist_model
from tfrobust.testing.layer_test import count_unique_variables
from tfrobust.testing.layer_test import run_layer_test
from tfrobust.testing.stats import acceptance_interval
from tfrobust.testing.stats import assert_rate_within
from tfrobust.testing.stats import binomial_tolerance
