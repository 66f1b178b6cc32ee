"""The client directory: the CSV header tests use, vCard exports from Google and Apple, matching."""

from __future__ import annotations

import pytest

from daemon.client_files import load_directory
from daemon.errors import UserError

APPLE = """BEGIN:VCARD
VERSION:3.0
PRODID:-//Apple Inc.//macOS 14.0//EN
N:Doe;Jane;;;
FN:Jane Doe
NICKNAME:Janie
item1.EMAIL;type=INTERNET;type=pref:jane.doe@example.com
item1.X-ABLabel:_$!<Other>!$_
TEL;type=CELL;type=VOICE;type=pref:(555) 010-0201
TEL;type=HOME;type=VOICE:+1 555 010 0299
NOTE:Prefers mornings\\, do-not-contact after termination
END:VCARD
BEGIN:VCARD
VERSION:3.0
N:Haddad;Omar;;;
FN:Omar Haddad
EMAIL;TYPE=INTERNET:omar.h@ex
 ample.org
TEL;TYPE=CELL:+15550100202
CATEGORIES:myContacts
END:VCARD
"""

GOOGLE = """BEGIN:VCARD
VERSION:3.0
FN:Mia Stone
N:Stone;Mia;;;
EMAIL;TYPE=INTERNET;TYPE=HOME:mia@example.net
TEL;TYPE=CELL:555-010-0206
END:VCARD
"""


def test_vcard_exports(tmp_path):
    (tmp_path / "apple.vcf").write_text(APPLE)
    d = load_directory(tmp_path / "apple.vcf")
    jane, omar = d.clients
    assert (jane.name, jane.email, jane.phone, jane.aliases) == ("Jane Doe", "jane.doe@example.com",
                                                                 "+15550100201", ("Janie",))
    assert jane.do_not_contact
    assert omar.email == "omar.h@example.org" and not omar.do_not_contact     # folded line joined
    (tmp_path / "google.vcf").write_text(GOOGLE)
    mia = load_directory(tmp_path / "google.vcf").clients[0]
    assert (mia.name, mia.phone) == ("Mia Stone", "+15550100206")


def test_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "clients.csv"
    path.write_text("name,aliases,email,phone,preferred_channel,do_not_contact\n"
                    "Jane Doe,,jane@example.com,+1 555 010 0201,,false\n"
                    "Omar,,not-an-address,,,false\n"
                    ",,x@example.com,,,false\n"
                    "Rosa Lind,,,12,carrier pigeon,maybe\n")
    with pytest.raises(UserError) as err:
        load_directory(path)
    text = str(err.value)
    assert f"{path}:3:" in text and f"{path}:4:" in text and f"{path}:5:" in text
    assert len(load_directory(path, strict=False).clients) == 1


def test_wrong_header_is_refused(tmp_path):
    path = tmp_path / "clients.csv"
    path.write_text("full name,mail\nJane,jane@example.com\n")
    with pytest.raises(UserError, match="header must be name,aliases,email"):
        load_directory(path)


def test_title_matching_prefers_the_longer_name_and_flags_shared_labels(tmp_path):
    path = tmp_path / "clients.csv"
    path.write_text("name,aliases,email,phone,preferred_channel,do_not_contact\n"
                    "Jo Smith,Jo,jo@example.com,,,false\n"
                    "Jo Brown,Jo,jb@example.com,,,false\n"
                    "Sam Lee,,sam@example.com,,,false\n")
    d = load_directory(path)
    assert [c.name for c in d.named_in("Session: jo smith (online)")] == ["Jo Smith"]
    assert len(d.named_in("Jo")) == 2                          # the shared alias is ambiguous
    assert d.named_in("Samuel Leeds") == []                    # whole words only
    assert len(d.named_in("Sam Lee + Jo Brown")) == 2
