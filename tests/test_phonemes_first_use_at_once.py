"""libespeak-ng keeps global state: requests asking at once for their first phonemes (a burst of
/api/tts?lang=… right after a start) each initialised it beside the others, and the server crashed
in libc or said a voice it has was missing. Run in a process of its own: a crash must not take the
test run with it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.quality_kit import need_espeak

ROOT = Path(__file__).resolve().parent.parent
LANGS = ["en", "de", "fr", "es", "it", "nl", "pl", "pt", "ru", "sv", "fi", "da", "cs", "hu", "ro", "tr"]

BURST = textwrap.dedent("""
    import sys, threading
    from sde.quality import phonemes

    made = []
    real_init = phonemes._Espeak.__init__

    def counted(self):
        made.append(1)
        real_init(self)

    phonemes._Espeak.__init__ = counted
    langs = sys.argv[1:]
    start, errors, words = threading.Barrier(len(langs)), [], {}

    def ask(lang):
        start.wait()
        try:
            phonemes.check_voice(lang)
            words[lang] = phonemes.phonemize_words(["hello"], lang)[0]
        except Exception as exc:
            errors.append(f"{lang}: {exc}")

    threads = [threading.Thread(target=ask, args=(lang,)) for lang in langs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(len(made), len(words), "; ".join(errors) or "none")
""")


def test_first_phonemes_asked_at_once_initialise_espeak_once_and_find_every_voice():
    need_espeak()
    for _ in range(3):  # the race needs the threads' first calls to meet: a few tries
        done = subprocess.run([sys.executable, "-c", BURST, *LANGS], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split(maxsplit=2) == ["1", str(len(LANGS)), "none\n"], done.stdout
