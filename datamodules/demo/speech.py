"""espeak-ng speech with phoneme timings, in-process through libespeak-ng (ctypes)."""

from __future__ import annotations

import ctypes
import functools
import os
import pickle
from dataclasses import dataclass

import numpy as np

from dtl_foundation.system_packages import SystemPackageMissing

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_POS_CHARACTER = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """Synthesised speech: int16-range float samples, their rate, and (start seconds, phoneme mnemonic) events."""

    wave: np.ndarray
    sample_rate: int
    phonemes: list[tuple[float, str]]


class EspeakMissingError(SystemPackageMissing):
    """libespeak-ng or its voice data is not installed."""


_INSTALL_HINT = "apt-get install espeak-ng, or run `make demo`, which installs it"


@functools.cache
def require_espeak() -> None:
    """Fail at once, naming the package, where libespeak-ng or its voice data is missing (libespeak-ng exits
    the process when its data is absent, so this is checked here, before any synthesis process starts)."""
    try:
        lib = ctypes.CDLL("libespeak-ng.so.1")
    except OSError as e:
        raise EspeakMissingError(f"espeak-ng is not installed (libespeak-ng.so.1 does not load: {e}): "
                                 f"{_INSTALL_HINT}") from e
    lib.espeak_ng_InitializePath(None)  # the data folder: ESPEAK_DATA_PATH or the compiled-in default
    data = ctypes.c_char_p()
    lib.espeak_Info(ctypes.byref(data))
    phontab = os.path.join(os.fsdecode(data.value or b""), "phontab")
    if not os.path.isfile(phontab):
        raise EspeakMissingError(f"espeak-ng's voice data is not installed ({phontab} is missing; the Debian "
                                 f"package espeak-ng-data): {_INSTALL_HINT}")


class _Espeak:
    def __init__(self) -> None:
        require_espeak()
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.libc = ctypes.CDLL(None)
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise EspeakMissingError(f"espeak-ng's voice data is not installed (espeak_Initialize failed; the "
                                     f"Debian package espeak-ng-data): {_INSTALL_HINT}")
        self._callback = _Callback(self._on_audio)  # kept referenced: espeak calls it later
        self.lib.espeak_SetSynthCallback(self._callback)
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[float, str]] = []

    def _on_audio(self, wav, count, events) -> int:
        if count > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                name = bytes(events[i].id.string).split(b"\0")[0].decode("ascii", "replace")
                self.events.append((events[i].sample / self.sample_rate, name))
            i += 1
        return 0

    def say(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, volume: int,
            seed: int) -> Utterance:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, volume)):
            self.lib.espeak_SetParameter(parameter, int(value), 0)
        self.chunks, self.events = [], []
        self.libc.srand(seed)  # espeak-ng's voice variants draw noise from libc rand(): reseed per utterance
        data = text.encode() + b"\0"
        if self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, 0, None, None) != 0:
            raise RuntimeError(f"espeak-ng failed to synthesise {text!r}")
        wave = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        return Utterance(wave=wave, sample_rate=self.sample_rate, phonemes=list(self.events))


def synthesize(text: str, *, voice: str = "en-us", rate: int = 170, pitch: int = 50, pitch_range: int = 50,
               volume: int = 100, seed: int = 0) -> Utterance:
    """Speak `text` with espeak-ng (rate in words/min, pitch and range 0-100, volume 0-200), reproducibly.

    Each utterance is synthesised in a freshly forked child: libespeak-ng keeps pitch-flutter and filter state
    from one utterance to the next, which would make a clip depend on whatever was spoken before it.
    """
    require_espeak()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: synthesise, send the result or the error, leave without running the parent's cleanup
        os.close(read_fd)
        with os.fdopen(write_fd, "wb") as pipe:
            try:
                result: Utterance | Exception = _Espeak().say(text, voice, rate, pitch, pitch_range, volume, seed)
            except Exception as e:  # noqa: BLE001  (carried to the parent, which raises it)
                result = e
            try:
                pipe.write(pickle.dumps(result))
            finally:
                os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        raise RuntimeError(f"espeak-ng failed to synthesise {text!r} with voice {voice!r} (the synthesis process "
                           f"ended with status {status})")
    result = pickle.loads(payload)
    if isinstance(result, Exception):
        raise result
    return result
