"""Data loaders: scikit-learn's bundled sets (datasets) and MNIST (mnist)."""
