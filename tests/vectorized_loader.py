"""``bench/vectorized.py`` (K networks in one vmapped pass; only the benchmarks use it) loaded by its path, so that
``tests/test_vectorized.py`` can hold it to :class:`skipnet.train.Trainer` without making it part of the package."""
import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "bench" / "vectorized.py"
_spec = importlib.util.spec_from_file_location("skipnet_bench_vectorized", _path)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

VectorizedTrainer = _module.VectorizedTrainer
fit_many = _module.fit_many
