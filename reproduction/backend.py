"""Which PyTensor back end compiles the graphs, and a description of the machine for run records.

PyTensor has no GPU back end of its own. On a CPU, JAX (XLA) runs our training graphs fastest
(measured on the 3x4096 MNIST MLP, batch 100, 2 cores: JAX 0.44 s a step, C (CVM) 0.72 s, Numba
0.89 s), so it is the default when installed; then the C back end where a C compiler exists; then
Numba. JAX is also PyTensor's road to a GPU.
"""
import importlib.util
import os
import platform
import shutil
import socket

MODES = ("JAX", "CVM", "NUMBA", "FAST_COMPILE")


def default_mode() -> str:
    if importlib.util.find_spec("jax") is not None:
        return "JAX"
    if shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc"):
        return "CVM"
    return "NUMBA"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str):
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def environment(mode: str) -> dict:
    """Versions, machine and back end, as a run record stores them."""
    import pytensor

    env = {
        "python": platform.python_version(),
        "pytensor": pytensor.__version__,
        "numpy": _version("numpy"),
        "jax": _version("jax") if mode == "JAX" else None,
        "numba": _version("numba") if mode == "NUMBA" else None,
        "mode": mode,
        "linker": {"JAX": "jax", "NUMBA": "numba", "CVM": "cvm (C)", "FAST_COMPILE": "py"}.get(mode, mode),
        "floatX": pytensor.config.floatX,
        "compiledir": pytensor.config.base_compiledir,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "hostname": socket.gethostname(),
    }
    if mode == "JAX":
        try:
            import jax

            env["jax_devices"] = [str(d) for d in jax.devices()]
        except Exception as e:  # a record is still worth writing without it
            env["jax_devices"] = f"unavailable: {e}"
    return env


def load_average():
    """The 1, 5 and 15-minute load averages (None where the system has none): other work sharing
    the cores shows here, so benchmarks record it beside their timings."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
