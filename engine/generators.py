"""The generator registry: generators by name, each made by a loader registered once.

    register("custom", lambda: load_checkpoint(path))    # e.g. `livediff serve --model DIR`

A session names its generator (the plugin's generator parameter, as a name); the pool loads
each one once, on a loader thread of its own, so a slow model load does not stall the other
sessions' windows. A failed load is remembered with its reason and reported, never replaced
by another generator.
"""
from __future__ import annotations

import threading
from typing import Callable

from engine.generator import Generator

Loader = Callable[[], Generator]


def _loop() -> Generator:
    from engine.loop_generator import LoopGenerator
    return LoopGenerator()


def _diffusion() -> Generator:
    from engine.diffusion import load_builtin
    return load_builtin(backend="auto")


_LOADERS: dict[str, Loader] = {"loop": _loop, "diffusion": _diffusion}


def register(name: str, loader: Loader) -> None:
    """Make generator `name` available to sessions (replacing an earlier loader of that name;
    pools that already loaded it keep what they have). [main-thread], before serving."""
    _LOADERS[name] = loader


def registered() -> list[str]:
    return sorted(_LOADERS)


class GeneratorUnavailable(RuntimeError):
    pass


class GeneratorPool:
    """Loaded generators by name. [any-thread]"""

    def __init__(self, loaders: dict[str, Loader] | None = None):
        self._loaders = _LOADERS if loaders is None else loaders
        self._loaded: dict[str, Generator] = {}
        self._failed: dict[str, str] = {}
        self._loading: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def ready(self, name: str, on_done: Callable[[str, str | None], None]) -> bool:
        """True once `name` is loaded or failed; otherwise start loading it (once) and call
        on_done(name, failure or None) from the loader thread when finished."""
        with self._lock:
            if name in self._loaded or name in self._failed:
                return True
            if name not in self._loading:
                self._loading.add(name)
                thread = threading.Thread(target=self._load, args=(name, on_done), name=f"livediff-load-{name}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            return False

    def join(self) -> None:
        """Wait for loads in progress: a process exiting while a backend initialises its native
        thread pools aborts instead of exiting cleanly."""
        for thread in self._threads:
            thread.join()

    def _load(self, name: str, on_done: Callable[[str, str | None], None]) -> None:
        failure = None
        loader = self._loaders.get(name)
        try:
            if loader is None:
                raise KeyError(f"no generator of that name; registered: {', '.join(sorted(self._loaders))}")
            generator = loader()
        except Exception as exc:  # import errors, missing weights, backend problems: all reported
            failure = f"the {name} generator is not available: {type(exc).__name__}: {exc}"
        with self._lock:
            self._loading.discard(name)
            if failure:
                self._failed[name] = failure
            else:
                self._loaded[name] = generator
        on_done(name, failure)

    def loaded(self, name: str) -> bool:
        return name in self._loaded

    def get(self, name: str) -> Generator:
        with self._lock:
            if name in self._failed:
                raise GeneratorUnavailable(self._failed[name])
            return self._loaded[name]
