"""Typed stubs for the compiled module relay._core (ext/_core.pyx)."""

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

DEBUG_BUILD: bool
OPENSSL_VERSION: str
SUITES: dict[str, tuple[int, int, int]]
STATUS_NAMES: dict[int, str]

class Session:
    suite: str
    replay_window: int
    def __init__(
        self, suite: str, key_material: Buffer, *, replay_window: int = 128, mki: None = None
    ) -> None: ...
    @classmethod
    def _from_session_keys(
        cls,
        suite: str,
        *,
        rtp_key: bytes,
        rtp_salt: bytes,
        rtcp_key: bytes,
        rtcp_salt: bytes,
        rtp_auth_key: bytes = b"",
        rtcp_auth_key: bytes = b"",
        replay_window: int = 128,
    ) -> Session: ...
    def protect(self, data: Buffer, /) -> bytes: ...
    def unprotect(self, data: Buffer, /) -> bytes: ...
    def protect_rtcp(self, data: Buffer, /) -> bytes: ...
    def unprotect_rtcp(self, data: Buffer, /) -> bytes: ...
    def protect_batch(
        self,
        slab: npt.NDArray[np.uint8],
        lengths: npt.NDArray[np.uint32],
        status: npt.NDArray[np.int32] | None = None,
    ) -> int: ...
    def unprotect_batch(
        self,
        slab: npt.NDArray[np.uint8],
        lengths: npt.NDArray[np.uint32],
        status: npt.NDArray[np.int32] | None = None,
    ) -> int: ...

def _kdf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes: ...
def _aes_cm_keystream(key: bytes, iv: bytes, length: int) -> bytes: ...
def _suite_names() -> list[bytes]: ...
