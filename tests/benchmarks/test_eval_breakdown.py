"""benchmarks/eval_breakdown.py: it scores every validation sequence of Food, and counts the products it times."""

import json
import subprocess
import sys
import tarfile

from conftest import ROOT

from lightning_fed.datamodules.sequential.sequence_source import embedded_archive


def _food_file(name: str) -> str:
    with tarfile.open(embedded_archive("fkcb"), "r:gz") as archive:
        return archive.extractfile(f"Food/{name}").read().decode()


def test_it_times_every_validation_batch_and_counts_the_four_heads_products():
    command = [sys.executable, str(ROOT / "benchmarks" / "eval_breakdown.py"), "--hidden-dim", "16"]
    proc = subprocess.run([*command, "--eval-batch-size", "256"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    sequences = len(_food_file("valid_data.txt").splitlines())  # 1,307 = 5 * 256 + 27
    assert result["eval_batches"] == [256] * (sequences // 256) + [sequences % 256]
    items = int(_food_file("num_items.txt").split()[0])
    assert result["scoring_gflop"] == round(2 * sequences * 16 * 4 * items / 1e9, 1)  # 4 experts, d = 16
    assert all(result[key] > 0 for key in ("eval_s", "encode_s", "score_s", "products_fp32_s", "products_bf16_s"))
