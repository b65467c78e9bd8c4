"""Re-recording a model: the same bytes keep `registered`; a quarantined model proven again is `verified`."""

from sqlalchemy import select

from registry.catalog.models import Model
from registry.services.add import add_folder
from tests.conftest import make_bert_like


def _set_state(reg, name, state, reason=None):
    # Registration itself (the smoke path) is tested in test_register_*; here only the recording matters.
    with reg.catalog.session() as s:
        m = s.scalars(select(Model).where(Model.name == name)).one()
        m.state, m.state_reason = state, reason


def _state(reg, name):
    with reg.catalog.reader() as s:
        return s.scalars(select(Model.state).where(Model.name == name)).one()


def test_readd_of_same_bytes_keeps_registered(reg, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    add_folder(reg, folder, "acme/tiny")
    _set_state(reg, "acme/tiny", "registered")
    assert add_folder(reg, folder, "acme/tiny").state == "registered"
    assert _state(reg, "acme/tiny") == "registered"


def test_readd_after_quarantine_is_verified_again(reg, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    add_folder(reg, folder, "acme/tiny")
    _set_state(reg, "acme/tiny", "quarantined", "verify: blob changed")
    assert add_folder(reg, folder, "acme/tiny").state == "verified"
