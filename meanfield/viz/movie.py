"""Movies of a run (``meanfield plot OUT.h5 --movie -o run.gif|run.mp4``).

Circle (and zonal densities on S^{d-1}, over the colatitude): rho / rho_bar (tokens as stems once the run
holds them) beside the kymograph, with a cursor at the frame's time.  Sphere: an orthographic view that turns once about the axis through the poles over
the movie.  Tokens (a particles run, or the token phase of a hand-off run): their positions.  Frames are
snapshots, evenly spaced in snapshot number, so a log-spaced long run plays over log-time.  GIF through
Pillow; MP4 through ffmpeg (a system ffmpeg, or the imageio-ffmpeg wheel when installed).
"""

from __future__ import annotations

import math
import shutil

import numpy as np

from ..errors import ConfigError
from .display import display_density
from .plot import _tokens as _live_tokens  # (positions, weights) of a snapshot's live tokens

FORMATS = ("gif", "mp4")


def _ffmpeg() -> str | None:
    """The ffmpeg executable: on PATH, or the one the imageio-ffmpeg wheel ships."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def check_format(path) -> str:
    """The movie format of ``path`` from its extension (ConfigError if it cannot be written here)."""
    from pathlib import Path

    fmt = Path(path).suffix[1:].lower()
    if fmt not in FORMATS:
        raise ConfigError(f"-o: got {str(path)!r}, allowed with --movie: a file ending in .gif (Pillow) or .mp4 (ffmpeg)")
    if fmt == "mp4" and _ffmpeg() is None:
        raise ConfigError(f"-o: {str(path)!r} needs ffmpeg, which is not installed (neither on PATH nor the "
                          'imageio-ffmpeg wheel); allowed: a .gif, or install ffmpeg (pip install imageio-ffmpeg)')
    return fmt


def _writer(fmt: str, fps: int):
    from matplotlib import animation, rcParams

    if fmt == "mp4":
        rcParams["animation.ffmpeg_path"] = _ffmpeg()
        # the output is a temporary without the extension: name the container
        return animation.FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p", "-f", "mp4"])

    class GifWriter(animation.PillowWriter):
        def finish(self):  # the output is a temporary without the .gif extension: name the format
            self._frames[0].save(self.outfile, format="GIF", save_all=True, append_images=self._frames[1:],
                                 duration=int(1000 / self.fps), loop=0)

    return GifWriter(fps=fps)


def frames_of(h, frames: int) -> np.ndarray:
    """Snapshot indices of the movie: all of them, or ``frames`` evenly spaced in snapshot number."""
    n = h["time"].size
    return np.arange(n) if n <= frames else np.unique(np.linspace(0, n - 1, frames).round().astype(int))


def _circle(h, fig, idx, rho_bar):
    from .plot import _log_time, parameters

    t = h["time"]
    zonal = "theta" not in h and "colatitude" in h  # a zonal density on S^{d-1}: over the colatitude
    theta = h["colatitude"] if zonal else h["theta"]
    rho = display_density(h) / rho_bar
    ax, kx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    finite = rho[np.isfinite(rho)]
    top = float(finite.max()) * 1.05 if finite.size else 2.0
    (line,) = ax.plot(theta, rho[idx[0]], lw=1.2)
    stems = ax.vlines([], 0, [], color="C3", lw=1.5)
    xlabel = "colatitude" if zonal else r"$\theta$"
    ax.set(xlim=(0, math.pi if zonal else 2 * math.pi), ylim=(0, max(top, 1.1)), xlabel=xlabel, ylabel=r"$\rho/\bar\rho$")
    title = ax.set_title("", fontsize=9)
    log = _log_time(h) and t[0] == 0 and t.size > 2
    tt = np.where(t > 0, t, t[1] / 2 if t.size > 1 else 1.0) if log else t
    kx.pcolormesh(theta, tt, rho, shading="auto", cmap="magma", vmin=0, vmax=top)
    cursor = kx.axhline(tt[idx[0]], color="c", lw=1)
    kx.set(xlabel=xlabel, ylabel="t", yscale="log" if log else "linear")
    fig.suptitle(parameters(h), fontsize=9)

    def update(i):
        line.set_ydata(rho[i])
        tok = _live_tokens(h, i)
        if tok is not None and not np.any(np.isfinite(rho[i])):
            ang = np.mod(np.arctan2(tok[0][:, 1], tok[0][:, 0]), 2 * math.pi)
            stems.set_segments([[(a, 0), (a, min(top, w * tok[1].size))] for a, w in zip(ang, tok[1])])
        else:
            stems.set_segments([])
        cursor.set_ydata([tt[i], tt[i]])
        title.set_text(f"$t = {t[i]:.4g}$" + (f", {len(tok[0])} tokens" if tok is not None else ""))
        return line, stems, cursor, title

    return update


def _sphere(h, fig, idx, rho_bar, size: int = 220):
    from .plot import parameters

    t, th, ph = h["time"], h["colatitude"], h["longitude"]
    rho = display_density(h) / rho_bar
    u, v = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size))
    inside = u * u + v * v <= 1
    w = np.sqrt(np.clip(1 - u * u - v * v, 0, 1))
    # the viewer looks from 20 degrees above the equator; the globe turns once about its axis over the movie
    tilt = math.radians(20)
    x0, z0 = w * math.cos(tilt) - v * math.sin(tilt), w * math.sin(tilt) + v * math.cos(tilt)
    colat = np.arccos(np.clip(z0, -1, 1))
    i_th = np.clip(np.searchsorted(th, colat), 0, th.size - 1)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_aspect("equal")
    finite = rho[np.isfinite(rho)]
    im = ax.imshow(np.zeros((size, size)), origin="lower", extent=(-1, 1, -1, 1), cmap="magma",
                   vmin=float(finite.min()) if finite.size else 0, vmax=float(finite.max()) if finite.size else 2)
    fig.colorbar(im, ax=ax, fraction=0.04, label=r"$\rho/\bar\rho$")
    dots = ax.scatter([], [], s=3, c="cyan", lw=0)
    title = ax.set_title("", fontsize=9)
    fig.suptitle(parameters(h), fontsize=9)
    nphi = ph.size

    def update(k):
        i = idx[k] if k < len(idx) else idx[-1]
        turn = 2 * math.pi * k / max(1, len(idx))
        lon = np.mod(np.arctan2(u, x0) + turn, 2 * math.pi)
        img = rho[i][i_th, np.clip((lon / (2 * math.pi) * nphi).astype(int), 0, nphi - 1)]
        im.set_data(np.where(inside, img, np.nan))
        tok = _live_tokens(h, i)
        if tok is not None:
            p = tok[0]
            c, s = math.cos(-turn), math.sin(-turn)
            x, y, z = c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1], p[:, 2]
            xv, zv = x * math.cos(tilt) + z * math.sin(tilt), -x * math.sin(tilt) + z * math.cos(tilt)
            front = xv > 0
            dots.set_offsets(np.column_stack([y[front], zv[front]]))
        title.set_text(f"$t = {t[i]:.4g}$")
        return im, dots, title

    return update


def _tokens(h, fig, idx):
    from matplotlib.patches import Circle

    from .plot import parameters

    t, d = h["time"], h["positions"].shape[-1]
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.add_patch(Circle((0, 0), 1, fill=False, lw=0.6, color="0.6"))
    ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1))
    ax.set_axis_off()
    dots = ax.scatter([], [], s=8, lw=0)
    title = ax.set_title("", fontsize=9)
    fig.suptitle(parameters(h) + ("" if d == 2 else " (first two coordinates)"), fontsize=9)

    def update(i):
        tok = _live_tokens(h, i)
        if tok is not None:
            dots.set_offsets(tok[0][:, :2])
            dots.set_sizes(8 * tok[1] * tok[1].size)
        title.set_text(f"$t = {t[i]:.4g}$" + (f", {len(tok[0])} tokens" if tok is not None else ""))
        return dots, title

    return update


def _check_gif_memory(fig, frames: int) -> None:
    """ConfigError if the GIF's frames, which the GIF writer keeps until the end (RGBA, 4 bytes a pixel), would
    take more than half the available memory."""
    from ..simulation.memory import available_memory

    width, height = fig.get_size_inches() * fig.dpi
    need = frames * 4 * width * height
    free = available_memory()
    if need > free / 2:
        raise ConfigError(f"--frames: the movie has {frames} frames, and a GIF keeps every one in memory: "
                          f"{need / 1e9:.3g} GB needed, "
                          f"{free / 1e9:.3g} GB available; allowed: at most {int(free / 2 / (4 * width * height))} "
                          "frames here, or an .mp4 (streamed to disk)")


def save_movie(h, path, fmt: str, frames: int = 150, fps: int = 15, progress: bool = False) -> int:
    """Write the movie of history ``h`` to ``path`` (format ``fmt``: gif | mp4); returns the number of frames."""
    from matplotlib.animation import FuncAnimation

    from ..simulation.trackers import progress_bar

    from .plot import _figure, _uniform

    if "position" in h:
        raise ConfigError("--movie: a causal run (position axis) has no movie yet, allowed: circle, sphere and "
                          "token runs")
    idx = frames_of(h, frames)
    method = str(h["attrs"].get("method", "spectral"))
    sphere = "longitude" in h
    plt, fig = _figure((10, 4.2) if not sphere and method != "particles" else (6, 5.5))
    try:
        if method == "particles" and not ("rho" in h and sphere):
            update, seq = _tokens(h, fig, idx), list(idx)
        elif sphere:
            update, seq = _sphere(h, fig, idx, _uniform(h)), list(range(len(idx)))
        else:
            update, seq = _circle(h, fig, idx, _uniform(h)), list(idx)
        if fmt == "gif":
            _check_gif_memory(fig, len(seq))
        anim = FuncAnimation(fig, update, frames=seq, blit=False)
        bar = progress_bar(total=len(seq), desc="frames", unit="frame", disable=not progress)
        anim.save(str(path), writer=_writer(fmt, fps), progress_callback=lambda i, n: bar.update(1))
        bar.close()
    finally:
        plt.close(fig)
    return len(seq)
