# As a PyTorch wheel's torch/version.py says which CUDA it was built with.
cuda: Optional[str] = '1.0'
