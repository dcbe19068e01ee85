"""One problem instance shared by several threads (the app's sessions, a page and its
background runs) gives each thread its own numbers."""

import threading

import torch

import explorer as ex


def test_concurrent_forward_passes_on_one_problem_do_not_mix_parameters():
    problem = ex.problem("digits_mlp", hidden=(16,), train_size=200)
    generator = torch.Generator().manual_seed(0)
    thetas = [
        problem.theta0
        + 0.1
        * torch.randn(problem.num_params, generator=generator, dtype=torch.float64)
        for _ in range(4)
    ]
    references = [problem.predict(theta) for theta in thetas]
    gradients = [problem.grad(theta) for theta in thetas]
    wrong = []

    def work(index: int) -> None:
        for _ in range(60):
            if not torch.equal(problem.predict(thetas[index]), references[index]):
                wrong.append(("predict", index))
            if not torch.allclose(problem.grad(thetas[index]), gradients[index]):
                wrong.append(("grad", index))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []
