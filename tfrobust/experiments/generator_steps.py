"""Compiled training steps of the generators: VAE (negative ELBO) and WGAN-GP.

Each step runs under `strategy.run`; per-replica losses are scaled by the
global batch size (`tf.nn.compute_average_loss`) so the update is that of
the global-batch mean.
"""

import keras
import tensorflow as tf

__all__ = ["make_vae_step", "make_wgan_gp_step", "gradient_penalty"]


def _sum(strategy, values):
    return tf.nest.map_structure(
        lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None), values)


def make_vae_step(vae, optimizer, strategy, global_batch_size):
    """One compiled VAE update on a batch `x`; returns the mean negative ELBO."""

    def replica(x):
        with tf.GradientTape() as tape:
            loss = tf.nn.compute_average_loss(vae.negative_elbo(x), global_batch_size=global_batch_size)
        grads = tape.gradient(loss, vae.trainable_variables)
        optimizer.apply_gradients(zip(grads, vae.trainable_variables))
        return loss

    @tf.function
    def step(x):
        return _sum(strategy, strategy.run(replica, (x,)))

    return step


def gradient_penalty(critic, x_real, x_fake, eps):
    """Per-example `(||grad_x critic(x_hat)||_2 - 1)^2` at `x_hat = eps x_real
    + (1 - eps) x_fake` (Gulrajani et al. 2017, Algorithm 1)."""
    x_hat = eps * x_real + (1.0 - eps) * x_fake
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        score = critic(x_hat, training=True)
    grad = tape.gradient(score, x_hat)
    norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=list(range(1, len(grad.shape)))) + 1e-12)
    return tf.square(norm - 1.0)


def make_wgan_gp_step(generator, critic, g_optimizer, c_optimizer, strategy, *, latent_dim,
                      global_batch_size, n_critic, gp_weight, seed_generator):
    """One compiled WGAN-GP iteration: `n_critic` critic updates on the real
    batches `x [n_critic, B, ...]`, then one generator update.

    Returns:
        A dict of global-batch means: "critic_loss" (last critic update,
        including the penalty), "wasserstein" (E[D(real)] - E[D(fake)], the
        critic's distance estimate), "gp" and "generator_loss".
    """

    def critic_update(x_real):
        b = tf.shape(x_real)[0]
        z = keras.random.normal([b, latent_dim], seed=seed_generator)
        x_fake = tf.stop_gradient(generator(z, training=True))
        eps = keras.random.uniform([b, 1, 1, 1], seed=seed_generator)
        with tf.GradientTape() as tape:
            d_real = tf.squeeze(critic(x_real, training=True), -1)
            d_fake = tf.squeeze(critic(x_fake, training=True), -1)
            gp = gradient_penalty(critic, x_real, x_fake, eps)
            per = d_fake - d_real + gp_weight * gp
            loss = tf.nn.compute_average_loss(per, global_batch_size=global_batch_size)
        grads = tape.gradient(loss, critic.trainable_variables)
        c_optimizer.apply_gradients(zip(grads, critic.trainable_variables))
        scale = lambda v: tf.nn.compute_average_loss(v, global_batch_size=global_batch_size)  # noqa: E731
        return loss, scale(d_real - d_fake), scale(gp)

    def generator_update(b):
        z = keras.random.normal([b, latent_dim], seed=seed_generator)
        with tf.GradientTape() as tape:
            score = tf.squeeze(critic(generator(z, training=True), training=True), -1)
            loss = tf.nn.compute_average_loss(-score, global_batch_size=global_batch_size)
        grads = tape.gradient(loss, generator.trainable_variables)
        g_optimizer.apply_gradients(zip(grads, generator.trainable_variables))
        return loss

    def replica(x):
        for i in range(n_critic):  # static and small (5): unrolled
            c_loss, w_dist, gp = critic_update(x[i])
        g_loss = generator_update(tf.shape(x)[1])
        return {"critic_loss": c_loss, "wasserstein": w_dist, "gp": gp, "generator_loss": g_loss}

    @tf.function
    def step(x):
        return _sum(strategy, strategy.run(replica, (x,)))

    return step
