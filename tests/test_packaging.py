"""The package as installed: every source directory is a package (a wheel leaves out any that is
not), and every module imports from wherever recede is installed.

.ci/run runs this file a second time, from outside the checkout, against a wheel installed
non-editable into a fresh venv, with ``RECEDE_CHECKOUT`` set to the checkout: then every module
must come from site-packages, and the wheel must hold every module of the checkout.
"""

import importlib
import importlib.util
import os
import pkgutil
import sysconfig

import recede

PACKAGE_DIR = os.path.dirname(os.path.abspath(recede.__file__))


def _source_modules(package_dir):
    """Dotted names of every ``.py`` file under ``package_dir`` (named ``recede...``)."""
    names = set()
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(root, os.path.dirname(package_dir)).split(os.sep)
        for f in files:
            if f.endswith(".py"):
                parts = rel if f == "__init__.py" else [*rel, f[:-3]]
                names.add(".".join(parts))
    return names


def _installed_modules():
    """Import every module of the recede that ``import recede`` finds; name -> file."""
    found = {"recede": recede.__file__}
    for info in pkgutil.walk_packages(recede.__path__, prefix="recede."):
        if info.name.endswith(".__main__"):  # importing it runs the CLI: locate it instead
            found[info.name] = importlib.util.find_spec(info.name).origin
        else:
            found[info.name] = importlib.import_module(info.name).__file__
    return found


def test_every_source_directory_with_python_files_is_a_package():
    missing = []
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if any(f.endswith(".py") for f in files) and "__init__.py" not in files:
            missing.append(os.path.relpath(root, PACKAGE_DIR))
    assert not missing, f"directories without __init__.py (a wheel leaves them out): {missing}"


def test_every_module_imports_from_the_package_directory():
    found = _installed_modules()
    assert set(found) == _source_modules(PACKAGE_DIR)
    for name, path in found.items():
        assert os.path.abspath(path).startswith(PACKAGE_DIR + os.sep), (name, path)


def test_installed_wheel_holds_every_module_of_the_checkout():
    checkout = os.environ.get("RECEDE_CHECKOUT")
    if not checkout:
        import pytest

        pytest.skip("set by .ci/run when it tests the installed wheel")
    checkout = os.path.abspath(checkout)
    site = {os.path.abspath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    assert any(PACKAGE_DIR.startswith(s + os.sep) for s in site), (PACKAGE_DIR, site)
    found = _installed_modules()
    for name, path in found.items():
        path = os.path.abspath(path)
        assert not path.startswith(checkout + os.sep), f"{name} imported from the checkout: {path}"
        assert any(path.startswith(s + os.sep) for s in site), (name, path)
    assert set(found) == _source_modules(os.path.join(checkout, "recede"))
    assert os.path.isfile(os.path.join(PACKAGE_DIR, "envs", "assets", "cartpole.xml"))
