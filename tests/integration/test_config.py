"""Where lakefuse takes its credentials from: the environment, else lakectl's
configuration file, which must not be readable by others."""
import os

from lf_helpers import is_mounted


def lakectl_yaml(path, lakefs, endpoint):
    path.write_text(
        "# written by lakectl config\n"
        "credentials:\n"
        f"  access_key_id: {lakefs.access_key}\n"
        f"  secret_access_key: \"{lakefs.secret_key}\"\n"
        "server:\n"
        f"  endpoint_url: {endpoint}/api/v1\n")


def test_lakectl_file_supplies_credentials_and_endpoint(lakefs, repo, s3, mount_bg, tmp_path):
    s3.put_object(Bucket=repo, Key="main/a.txt", Body=b"from lakectl config")
    cfg = tmp_path / "lakectl.yaml"
    lakectl_yaml(cfg, lakefs, lakefs.endpoint)
    cfg.chmod(0o600)
    res = mount_bg(f"lakefs://{repo}", "--config", str(cfg), endpoint=False,
                   access_key=False, secret_key=False, check=True)
    assert "readable by other users" not in res.stderr
    assert (res.path / "main" / "a.txt").read_bytes() == b"from lakectl config"


def test_world_readable_credentials_file_gets_a_warning(lakefs, repo, mount_bg, tmp_path):
    cfg = tmp_path / "lakectl.yaml"
    lakectl_yaml(cfg, lakefs, lakefs.endpoint)
    cfg.chmod(0o644)
    res = mount_bg(f"lakefs://{repo}", "--config", str(cfg), endpoint=False,
                   access_key=False, secret_key=False, check=True)
    assert "readable by other users" in res.stderr and str(cfg) in res.stderr
    assert lakefs.secret_key not in res.stderr
    assert sorted(os.listdir(res.path)) == ["main"]


def test_no_credentials_anywhere_fails_clearly(lakefs, repo, mount_bg, tmp_path):
    res = mount_bg(f"lakefs://{repo}", "--config", str(tmp_path / "missing.yaml"),
                   access_key=False, secret_key=False)
    assert res.returncode not in (0, None)
    assert "missing.yaml" in res.stderr
    assert not is_mounted(res.path)
