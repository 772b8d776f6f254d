"""model.infer: prediction with test-time augmentation."""

import numpy as np
from helpers import disc_tiles, tiny_net

from model.infer import predict_prob
from model.unet import UNetConfig


def test_predict_prob_tta_is_equivariant_and_changes_the_output():
    net = tiny_net(5, UNetConfig(3, "transpose", 2))
    images, _, _ = disc_tiles(3, seed=4)
    tta = predict_prob(net, images, loss="bce", tta=True, precision="fp32")
    plain = predict_prob(net, images, loss="bce", tta=False, precision="fp32")
    assert tta.shape == plain.shape == (3, 32, 32)
    assert tta.dtype == np.float32
    assert tta.min() >= 0 and tta.max() <= 1
    # Averaged over all 8 flips/rotations, each mapped back, the prediction of a rotated or flipped
    # image is the rotated or flipped prediction; a view not mapped back would break this.
    for transform in (lambda a: np.rot90(a, 1, axes=(-2, -1)), lambda a: a[..., ::-1]):
        moved = predict_prob(net, np.ascontiguousarray(transform(images)), loss="bce", tta=True, precision="fp32")
        np.testing.assert_allclose(moved, transform(tta), atol=1e-5)
    # The net itself is not equivariant, so TTA must actually change the output.
    assert np.abs(tta - plain).max() > 1e-4
