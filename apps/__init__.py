"""needle example applications: MNIST helpers, MLPResNet, CNN/RNN models and training loops."""
