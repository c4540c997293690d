import numpy as np

from microturn.config import TurnLayout
from microturn.streams.video import frame_to_patches
from microturn.world.video import COLORS, bouncing_ball, moving_then_still, shape_appears


def ball_y(img, color="red"):
    ys, _ = np.nonzero((img == COLORS[color]).all(-1))
    return ys.mean()


def test_bounces_hit_the_floor_the_promised_number_of_times():
    clip = bouncing_ball(12.0, bounces=4, start=2.0, period=1.0)
    assert len(clip.frames) == 60 and clip.truth["bounces"] == 4
    ys = np.array([ball_y(f) for _, f in clip.frames])  # image rows: larger is lower
    moves = [(clip.frames[i + 1][0], np.sign(d)) for i, d in enumerate(np.diff(ys)) if d != 0]
    bottoms = [
        t for (_, a), (t, b) in zip(moves, moves[1:]) if a > 0 and b < 0
    ]  # falling, then rising
    assert len(bottoms) == 4
    assert all(
        abs(b - t) <= 0.4 for b, t in zip(bottoms, clip.truth["bounce_times"])
    )  # two frames at 5 fps
    assert frame_to_patches(clip.frames[0][1], TurnLayout()).shape == (
        4,
        3,
        40,
        40,
    )  # fits the layout


def test_motion_interval_and_appearance():
    clip = moving_then_still(10.0, (3.0, 6.0))
    xs = [np.nonzero((f == COLORS["blue"]).all(-1))[1].mean() for _, f in clip.frames]
    moving = [t for (t, _), a, b in zip(clip.frames[1:], xs, xs[1:]) if abs(b - a) > 0.5]
    assert min(moving) >= 3.0 and max(moving) < 6.2
    clip = shape_appears(8.0, at=4.0)
    green = [t for t, f in clip.frames if (f == COLORS["green"]).all(-1).any()]
    assert min(green) == 4.0 and max(green) == clip.frames[-1][0]
