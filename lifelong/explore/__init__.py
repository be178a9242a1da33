"""UI-free computations behind the app's pages; every page calls into this package."""
