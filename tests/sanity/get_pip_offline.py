"""Stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test fetches get-pip from ci-files.testing.ansible.com, which this project's
machines cannot reach. It runs the script with pip-install arguments (options and
packages such as pip==24.2). This does the same with what Python ships: ensurepip puts
the bundled pip in the venv, then that pip installs the requested packages from PyPI.
scripts/test copies it into ansible-test's cache under the name ansible-test looks for.
"""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
