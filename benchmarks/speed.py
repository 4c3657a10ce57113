"""Per-iteration training cost of VAE, AVAE, SE^5, SE-AVAE and AVAE-SS (paper Table 1 "Time").

One iteration = forward (loss) + backward + Adam step, on the colorMNIST ConvNet
(:class:`ColorMNISTConvEncoder` / :class:`ColorMNISTConvDecoder`), batch 64, latent 64;
``--arch celeba-conv --models VAE AVAE`` times the CelebA nets instead (64x64 faces).

* **Baseline.** "VAE" is :class:`pythae_avae.GaussianVAE`: the same code path as every other
  model here (``AVAEFamilyModel.vae_terms``, ``SSE/(2 obs_var)``), minus the auxiliary terms,
  so a ratio measures only what a method adds. (Pythae's own ``VAE`` has the same cost up to
  its loss arithmetic but a different likelihood scale, ``obs_var = 1``.)
* **Timing.** All models are built in one process with identical initial nets and timed
  round-robin (the order rotates every round) after a warm-up, so drift of the machine
  (frequency, caches, other load) hits every model alike. Reported: median seconds per
  iteration and ratio to the VAE's median. AVAE-SS is started from the (untrained) VAE; its
  iteration includes generating its inputs ``x = g(z0)``.
* **Memory.** On CUDA: ``torch.cuda.max_memory_allocated`` during one iteration, minus what
  was allocated before it. On CPU PyTorch has no allocator statistics; we replay one
  iteration under ``torch.profiler`` with ``profile_memory=True`` and take the peak of the
  running sum of per-operator net allocations (tensor memory only, operator granularity:
  transient buffers inside one operator are not seen). Process RSS is not reported: it is
  dominated by the interpreter and allocator caching and hides differences of a few MB.
* **Trainer overhead.** Pythae's ``BaseTrainer.train_step`` (``DataLoader`` over a
  ``BaseDataset`` with its collate function, callbacks, progress bar, ``loss.item()`` per
  step) vs. a bare PyTorch loop on the same model and loss (batches sliced from a tensor in
  a random order, same optimizer, no per-step ``.item()``), interleaved epoch by epoch.
  And this package's :class:`ResumableTrainer` — whole ``train()`` calls (step-indexed
  seeding, the non-finite check, a checkpoint every 200 steps and after the last, the
  ``final_model`` folder) on epochs of 63 batches (a colorMNIST epoch) — against bare loops,
  alternated, medians of ``--trainer-repeats`` runs of 1 and ``1 + --trainer-epochs``
  epochs each: the per-iteration cost is the slope between the two lengths, and what a call
  pays once (folders, the last checkpoint, ``final_model``) is printed apart instead of being
  spread over the few hundred steps timed (on a GPU, where this net's step is ~5 ms, such
  once-per-call costs weigh on an end-to-end average: the +47% measured there before this
  split mixed the two); so is the range of the repeats' own overheads, the comparison's
  noise on this host.

Usage::

    python benchmarks/speed.py --iters 30 --batch-size 64 --device cpu
    python benchmarks/speed.py --arch celeba-conv --models VAE AVAE --iters 10 --no-trainer
"""

import argparse
import contextlib
import copy
import io
import math
import os
import statistics
import tempfile
import time

import torch
from pythae.data.datasets import BaseDataset
from pythae.trainers import BaseTrainer, BaseTrainerConfig

from pythae_avae import (
    AVAE,
    AVAE_SS,
    SE,
    SE_AVAE,
    AVAEConfig,
    GaussianVAE,
    GaussianVAEConfig,
    SE_AVAE_Config,
    SEConfig,
)
from pythae_avae.nets import ARCHITECTURES, build_nets
from pythae_avae.recipes import default_device, device_arg, quiet_pythae

#: CPU targets from the task (paper's ConvNet colorMNIST ratios on its hardware: 1.5/4/4.7/1.5)
TARGETS = {"AVAE": 1.4, "SE^5": 3.3, "SE-AVAE": 3.8, "AVAE-SS": 1.4}
MODELS = ("VAE", "AVAE", "SE^5", "SE-AVAE", "AVAE-SS")


def build_models(latent_dim: int, device: str, arch: str = "colormnist-conv", names=None):
    """The models ``names`` (default all) on identical initial ``arch`` nets, in train mode."""
    torch.manual_seed(0)
    encoder, decoder = build_nets(arch, latent_dim)
    common = dict(input_dim=ARCHITECTURES[arch][2], latent_dim=latent_dim)

    def nets():
        return copy.deepcopy(encoder), copy.deepcopy(decoder)

    vae = GaussianVAE(GaussianVAEConfig(**common), *nets())
    builders = {
        "VAE": lambda: vae,
        "AVAE": lambda: AVAE(AVAEConfig(**common), *nets()),
        "SE^5": lambda: SE(SEConfig(se_steps=5, **common), *nets()),
        "SE-AVAE": lambda: SE_AVAE(SE_AVAE_Config(se_steps=5, **common), *nets()),
        "AVAE-SS": lambda: AVAE_SS.from_pretrained(vae),
    }
    return {name: builders[name]().to(device).train() for name in names or builders}


def make_step(model, batch):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad()
        model(batch).loss.backward()
        optimizer.step()

    return step


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_round_robin(steps, iters, warmup, device):
    for _ in range(warmup):
        for step in steps.values():
            step()
    sync(device)
    times = {name: [] for name in steps}
    names = list(steps)
    for i in range(iters):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            steps[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def component_times(model, batch, iters, device):
    """Median seconds of the pieces an iteration is made of (explains the ratios)."""
    x = batch["data"]
    encoder, decoder = copy.deepcopy(model.encoder).train(), copy.deepcopy(model.decoder).train()
    z = torch.randn(x.shape[0], model.latent_dim, device=x.device)
    attack_encoder = copy.deepcopy(model.encoder).eval()
    x_adv = x.clone().requires_grad_(True)
    pieces = {
        "encoder fwd+bwd (train mode)": lambda: encoder(x).embedding.sum().backward(),
        "decoder fwd+bwd": lambda: decoder(z).reconstruction.sum().backward(),
        "encoder fwd, no grad (eval)": lambda: torch.no_grad()(attack_encoder)(x),
        "one PGD step: fwd + input grad (eval)": lambda: torch.autograd.grad(
            attack_encoder(x_adv).embedding.sum(), x_adv),
    }
    return time_round_robin(pieces, iters, 2, device)


def peak_memory(step, device):
    """Peak extra tensor memory (bytes) of one iteration; see the module docstring."""
    if device.startswith("cuda"):
        sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        sync(device)
        return torch.cuda.max_memory_allocated() - base
    # A CUDA build of torch on a machine without a GPU makes the profiler (Kineto) log its failed
    # device probe as "ERROR: gpuGetDeviceCount failed", which reads like a broken measurement;
    # level 5 silences Kineto's own log (read when the profiler starts; a user's setting wins).
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e.time_range.start, e.self_cpu_memory_usage)
        for e in prof.events()
        if e.self_cpu_memory_usage
    )
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def trainer_overhead(model, data, batch_size, epochs, device):
    """Seconds per iteration: (Pythae BaseTrainer.train_step, bare loop), medians over epochs."""
    bare_model = copy.deepcopy(model)
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out, per_device_train_batch_size=batch_size, num_epochs=epochs,
            learning_rate=1e-4, no_cuda=not device.startswith("cuda"),
        )
        dataset = BaseDataset(data, torch.zeros(len(data)))
        trainer = BaseTrainer(model, dataset, training_config=config)
        trainer.prepare_training()
        optimizer = torch.optim.Adam(bare_model.parameters(), lr=1e-4)
        data_dev = data.to(device)
        n_batches = len(data) // batch_size

        def bare_epoch():
            bare_model.train()
            order = torch.randperm(len(data), device=device)
            for b in range(n_batches):
                x = data_dev[order[b * batch_size:(b + 1) * batch_size]]
                optimizer.zero_grad()
                bare_model({"data": x}).loss.backward()
                optimizer.step()

        pythae_t, bare_t = [], []
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # tqdm bar: drawn, not shown
                trainer.train_step(epoch)
                sync(device)
                trainer.callback_handler.on_epoch_end(config)
            pythae_t.append((time.perf_counter() - start) / len(trainer.train_loader))
            start = time.perf_counter()
            bare_epoch()
            sync(device)
            bare_t.append((time.perf_counter() - start) / n_batches)
    return statistics.median(pythae_t[1:]), statistics.median(bare_t[1:])


def resumable_overhead(model, data, batch_size, epochs, repeats, device):
    """Seconds per iteration of ``ResumableTrainer.train()`` and of a bare loop, and the fixed
    seconds a ``train()`` call adds, from runs of 1 and ``1 + epochs`` epochs.

    The per-iteration cost is the slope ``(T(1 + epochs) - T(1)) / (epochs x steps per epoch)``
    (medians over ``repeats`` alternated runs), so what a call pays once (output folders, the
    checkpoint after the last step, the ``final_model`` save) is not spread over the few
    hundred steps timed; it is reported apart as ``T(1) - steps x slope``. Checkpoints every
    ``checkpoint_every`` steps are a per-step cost and stay in the slope. Each repeat also
    gives its own overhead (its two slopes, timed minutes apart at most), whose spread shows
    how finely the host's load lets the comparison resolve: on a shared 2-core CPU two runs of
    the median read -9.8% and +7.6% (RESULTS.md, "Speed on the CPU").

    Returns:
        ``(ours per step, bare per step, ours fixed per call)`` in seconds, and the overhead
        ``ours / bare - 1`` of each repeat.
    """
    from pythae_avae.trainers import ResumableTrainer, ResumableTrainerConfig

    dataset = BaseDataset(data, torch.zeros(len(data)))
    steps_per_epoch = math.ceil(len(data) / batch_size)
    data_dev = data.to(device)

    def ours(n_epochs):
        with tempfile.TemporaryDirectory() as out:
            config = ResumableTrainerConfig(
                output_dir=out, per_device_train_batch_size=batch_size, num_epochs=n_epochs,
                learning_rate=1e-4, no_cuda=not device.startswith("cuda"), resume=False,
            )
            trainer = ResumableTrainer(copy.deepcopy(model), dataset, training_config=config)
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                trainer.train()
            sync(device)
            return time.perf_counter() - start

    def bare(n_epochs):
        bare_model = copy.deepcopy(model).to(device).train()
        optimizer = torch.optim.Adam(bare_model.parameters(), lr=1e-4)
        start = time.perf_counter()
        for _ in range(n_epochs):
            order = torch.randperm(len(data), device=device)
            for b in range(0, len(data), batch_size):
                optimizer.zero_grad()
                bare_model({"data": data_dev[order[b:b + batch_size]]}).loss.backward()
                optimizer.step()
        sync(device)
        return time.perf_counter() - start

    lengths = (1, 1 + epochs)
    times = {(run, n): [] for run in ("ours", "bare") for n in lengths}
    for _ in range(repeats):
        for n in lengths:
            times["ours", n].append(ours(n))
            times["bare", n].append(bare(n))

    def slope(t_short, t_long):
        return (t_long - t_short) / (epochs * steps_per_epoch)

    med = {key: statistics.median(values) for key, values in times.items()}
    ours, bare_ = (slope(med[run, lengths[0]], med[run, lengths[1]]) for run in ("ours", "bare"))
    per_repeat = [slope(*(times["ours", n][r] for n in lengths)) / slope(*(times["bare", n][r] for n in lengths)) - 1
                  for r in range(repeats)]
    return ours, bare_, med["ours", 1] - steps_per_epoch * ours, per_repeat


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--arch", default="colormnist-conv", choices=sorted(ARCHITECTURES),
                        help="nets of every model (celeba-conv: 64x64 faces)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                        help="models to time (the VAE is always timed: ratios are to it)")
    parser.add_argument("--device", type=device_arg, default=default_device())
    parser.add_argument("--trainer-epochs", type=int, default=4,
                        help="epochs for the trainer-overhead comparisons (Pythae's: epochs of 10 "
                             "iterations; ours: 1 against 1 + this many epochs of 63)")
    parser.add_argument("--trainer-repeats", type=int, default=5,
                        help="alternated ResumableTrainer / bare runs of each length (each repeat's own overhead is printed too: its spread is the host's noise)")
    parser.add_argument("--no-trainer", action="store_true", help="skip the trainer overhead")
    args = parser.parse_args(argv)
    device = args.device
    quiet_pythae()

    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"arch={args.arch} batch={args.batch_size} latent={args.latent_dim} iters={args.iters}")
    shape = ARCHITECTURES[args.arch][2]
    names = ["VAE"] + [name for name in args.models if name != "VAE"]
    models = build_models(args.latent_dim, device, args.arch, names)
    x = torch.rand(args.batch_size, *shape, generator=torch.Generator().manual_seed(0))
    batch = {"data": x.to(device)}
    prior = AVAE_SS.prior_batch(args.batch_size, device=device)
    steps = {name: make_step(m, prior if name == "AVAE-SS" else batch) for name, m in models.items()}

    medians = time_round_robin(steps, args.iters, args.warmup, device)
    memory = {name: peak_memory(step, device) for name, step in steps.items()}
    kind = "CUDA max_memory_allocated" if device.startswith("cuda") else "profiler tensor peak"
    print(f"\n{'model':<8} {'s/iter':>9} {'x VAE':>7} {'target':>7} {'peak MB':>9}  ({kind})")
    for name in steps:
        ratio = medians[name] / medians["VAE"]
        target = f"<={TARGETS[name]}" if name in TARGETS else "1"
        print(f"{name:<8} {medians[name]:>9.4f} {ratio:>7.2f} {target:>7} "
              f"{memory[name] / 2**20:>9.1f}")

    pieces = component_times(models["VAE"], batch, args.iters, device)
    print("\nwhere the time goes (s, and as a fraction of one VAE iteration):")
    for name, seconds in pieces.items():
        print(f"  {name:<40} {seconds:.4f}  {seconds / medians['VAE']:.2f}")
    enc = pieces["encoder fwd+bwd (train mode)"] / medians["VAE"]
    attack = (pieces["encoder fwd, no grad (eval)"]
              + 5 * pieces["one PGD step: fwd + input grad (eval)"]) / medians["VAE"]
    print(f"  => AVAE >= 1 + {enc:.2f} (one more encoder fwd+bwd); "
          f"SE^5 ~ 1 + {attack:.2f} (attack) + {enc:.2f} (x~ in the batch) + decoder for x~")

    if not args.no_trainer:
        data = torch.rand(10 * args.batch_size, *shape,
                          generator=torch.Generator().manual_seed(1))
        pythae_t, bare_t = trainer_overhead(
            copy.deepcopy(models["VAE"]), data, args.batch_size, max(args.trainer_epochs, 2), device
        )
        print(f"\nVAE iteration in Pythae's BaseTrainer.train_step: {pythae_t:.4f} s; "
              f"bare PyTorch loop: {bare_t:.4f} s; overhead {100 * (pythae_t / bare_t - 1):+.1f}%")
        epoch_data = torch.rand(63 * args.batch_size, *shape,  # a colorMNIST epoch
                                generator=torch.Generator().manual_seed(2))
        ours_t, bare_t, fixed, per_repeat = resumable_overhead(
            copy.deepcopy(models["VAE"]), epoch_data, args.batch_size, max(args.trainer_epochs, 2),
            args.trainer_repeats, device,
        )
        print(f"VAE iteration in ResumableTrainer.train() (slope of 1 vs {1 + max(args.trainer_epochs, 2)} "
              f"epochs of 63 steps): {ours_t:.4f} s; bare PyTorch loop: {bare_t:.4f} s; "
              f"overhead {100 * (ours_t / bare_t - 1):+.1f}% (target <= 5%); once per train() call "
              f"(folders, last checkpoint, final_model): {fixed:.3f} s; overhead of each of the "
              f"{len(per_repeat)} repeats: {100 * min(per_repeat):+.1f}% to {100 * max(per_repeat):+.1f}%")


if __name__ == "__main__":
    main()
