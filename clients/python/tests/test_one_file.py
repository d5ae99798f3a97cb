"""The companion copied as one file: the package zipped (``python3 -m zipfile -c emalab.zip emalab``) and put on the
path, as Python imports from a zip (zipimport), with nothing else of this repository in reach."""
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "emalab")


class OneFileTests(unittest.TestCase):
    def test_the_zipped_package_imports_trains_and_runs_its_command_from_one_file(self):
        with tempfile.TemporaryDirectory() as folder:
            bundle = os.path.join(folder, "emalab.zip")
            subprocess.run([sys.executable, "-m", "zipfile", "-c", bundle, PACKAGE], check=True)
            with zipfile.ZipFile(bundle) as z:
                self.assertIn("emalab/tracks.py", z.namelist())
            script = (
                "import sys, torch; sys.path.insert(0, 'emalab.zip')\n"
                "import emalab; from emalab import EmaTracks\n"
                "assert emalab.__file__.startswith(sys.path[0]), emalab.__file__\n"
                "m = torch.nn.Linear(3, 2); t = EmaTracks(m, [0.9, {'preset': 'timm', 'decay': 0.99}])\n"
                "with torch.no_grad(): m.weight.add_(1.0)\n"
                "t.update()\n"
                "print(t.names, float(t.averaged('ema-0.9')['weight'].sub(m.weight).abs().max()))\n")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            run = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True)
            self.assertEqual(0, run.returncode, run.stderr)
            names, gap = run.stdout.rsplit("]", 1)
            self.assertEqual("['ema-0.9', 'ema-0.99-timm'", names)
            self.assertGreater(float(gap), 0.05)  # the shadow moved a tenth of the way: it lags the weights
            cli = subprocess.run([sys.executable, "-m", "emalab", "--help"], cwd=folder, capture_output=True, text=True,
                                 env={**env, "PYTHONPATH": bundle})
            self.assertEqual(0, cli.returncode, cli.stderr)
            self.assertIn("sweep", cli.stdout)
