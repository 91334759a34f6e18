"""A torch classifier, declared a fimtheory torch-model subject: a factory the suite calls
(under torch.manual_seed(0)) to get the module. θ defaults to the last Linear layer."""

from properties.subjects import torch_model


@torch_model
def make_classifier():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
