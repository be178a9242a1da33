"""A family from outside the project, as a researcher would write one: the VAE's networks
under a key of their own (tests/models/test_plugins.py plugs it in)."""

from lifelong.models.vae import VAE, VAEConfig


class TinyFamily(VAE):
    """A plugin family for the tests: a VAE under its own key."""

    family = "tinyfamily"
    config_cls = VAEConfig


class NotAFamily:
    pass
