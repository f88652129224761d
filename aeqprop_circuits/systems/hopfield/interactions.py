"""Interactions between successive layers of a layered Hopfield network.

An interaction k couples layer k-1 ("pre") and layer k ("post") through the energy term
-post . F(pre; W), with F linear in pre (for a fixed max-pooling routing) and linear in W.
Each interaction therefore only needs three operations, all batched GEMMs:

- ``forward(pre, W)``    F(pre; W), the drive layer k receives from layer k-1;
- ``backward(post, W)``  F^T(post; W), the drive layer k-1 receives from layer k
                         (d/dpre of post . F(pre; W));
- ``weight_grad(pre, post)``  sum over the batch of d/dW [post . F(pre; W)].

Layouts: dense layers are (B, n); convolutional layers are channels-last (B, H, W, C), so that
a convolution is one im2col copy and one GEMM against a (k*k*C_in, C_out) weight matrix, with
no transposes. Max pooling is piecewise linear: its routing (which element of each pooling
window is the maximum of the pre-pool map) is an explicit array computed from the pre layer,
so that callers can hold it fixed (linearisation for rbp / tbp) or recompute it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class Dense:
    """E = -post^T W^T pre with W of shape (n_pre, n_post) (the papers' dim(s_{k-1}) x dim(s_k))."""

    kind = "dense"
    has_routing = False

    def __init__(self, pre_shape: tuple[int, ...], n_post: int):
        self.pre_shape = tuple(pre_shape)
        self.n_pre = int(np.prod(pre_shape))
        self.post_shape = (int(n_post),)
        self.weight_shape = (self.n_pre, int(n_post))
        self.fan_in = self.n_pre
        self.fan_out = int(n_post)

    def routing(self, pre, weight):
        return None

    def forward(self, pre, weight, routing=None):
        return pre.reshape(len(pre), -1) @ weight

    def backward(self, post, weight, routing=None):
        return (post @ weight.T).reshape((len(post),) + self.pre_shape)

    def weight_grad(self, pre, post, routing=None):
        return pre.reshape(len(pre), -1).T @ post

    def bias_sum(self, post):
        """Sum over the batch of d/db [post . b] (biases are per unit)."""
        return post.sum(axis=0)

    def dense_matrix(self, weight):
        return np.asarray(weight)


def im2col(x: np.ndarray, kernel: int, padding: int) -> np.ndarray:
    """(B, H, W, C) -> (B, H', W', k*k*C) patches, in (row, column, channel) order."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    windows = sliding_window_view(x, (kernel, kernel), axis=(1, 2))  # (B, H', W', C, k, k)
    b, h, w, c = windows.shape[:4]
    return np.ascontiguousarray(windows.transpose(0, 1, 2, 4, 5, 3)).reshape(b, h, w, kernel * kernel * c)


class Conv:
    """E = -post . P(W * pre): convolution (stride 1, zero padding `padding`) then pooling.

    pool: "avg" (Aeqprop, eq. 22), "max" (the EBL study's DCHN, eq. 19) or "none"; pooling
    windows are pool_size x pool_size with stride pool_size. The weight is stored as a
    (k*k*C_in, C_out) matrix (the paper's C_out x C_in x k x k kernel, reordered).
    """

    kind = "conv"

    def __init__(self, pre_shape: tuple[int, int, int], channels: int, kernel: int, padding: int = 0,
                 pool: str = "avg", pool_size: int = 2):
        h, w, c_in = (int(v) for v in pre_shape)
        if pool not in ("avg", "max", "none"):
            raise ValueError(f"pool must be 'avg', 'max' or 'none', got {pool!r}")
        self.pre_shape = (h, w, c_in)
        self.kernel, self.padding, self.channels = int(kernel), int(padding), int(channels)
        self.pool = pool
        self.pool_size = 1 if pool == "none" else int(pool_size)
        self.conv_shape = (h + 2 * padding - kernel + 1, w + 2 * padding - kernel + 1)
        ph, pw = self.conv_shape
        if ph <= 0 or pw <= 0 or ph % self.pool_size or pw % self.pool_size:
            raise ValueError(f"conv {kernel}x{kernel} pad {padding} on {h}x{w} gives {ph}x{pw}, "
                             f"not divisible by the pool size {self.pool_size}")
        if padding > kernel - 1:
            raise ValueError(f"padding {padding} larger than kernel - 1 = {kernel - 1}")
        self.post_shape = (ph // self.pool_size, pw // self.pool_size, self.channels)
        self.weight_shape = (kernel * kernel * c_in, self.channels)
        self.fan_in = kernel * kernel * c_in
        self.fan_out = kernel * kernel * self.channels
        self.has_routing = pool == "max"

    # --- pooling ---------------------------------------------------------------------------
    def _windows(self, z):
        b, ph, pw, c = z.shape
        p = self.pool_size
        return z.reshape(b, ph // p, p, pw // p, p, c)

    def _pool(self, z, routing):
        if self.pool == "none":
            return z
        w6 = self._windows(z)
        if self.pool == "avg":
            return w6.mean(axis=(2, 4))
        # max: pick the routed element of each window
        b, ho, p, wo, _, c = w6.shape
        flat = w6.transpose(0, 1, 3, 5, 2, 4).reshape(b, ho, wo, c, p * p)
        return np.take_along_axis(flat, routing[..., None], axis=-1)[..., 0]

    def _unpool(self, post, routing):
        """Adjoint of the pooling: (B, Ho, Wo, C) -> (B, H', W', C)."""
        if self.pool == "none":
            return post
        p = self.pool_size
        b, ho, wo, c = post.shape
        if self.pool == "avg":
            up = np.broadcast_to((post / (p * p))[:, :, None, :, None, :], (b, ho, p, wo, p, c))
            return up.reshape(b, ho * p, wo * p, c)
        flat = np.zeros((b, ho, wo, c, p * p), dtype=post.dtype)
        np.put_along_axis(flat, routing[..., None], post[..., None], axis=-1)
        return flat.reshape(b, ho, wo, c, p, p).transpose(0, 1, 4, 2, 5, 3).reshape(b, ho * p, wo * p, c)

    def _convolve(self, pre, weight):
        cols = im2col(pre, self.kernel, self.padding)
        return cols @ weight

    def routing(self, pre, weight):
        """Index of the maximum in each pooling window of W * pre, (B, Ho, Wo, C); None unless max pooling."""
        if self.pool != "max":
            return None
        return self._routing_of(self._convolve(pre, weight))

    def _routing_of(self, z):
        w6 = self._windows(z)
        b, ho, p, wo, _, c = w6.shape
        return w6.transpose(0, 1, 3, 5, 2, 4).reshape(b, ho, wo, c, p * p).argmax(axis=-1)

    # --- the three operations ----------------------------------------------------------------
    def forward(self, pre, weight, routing=None):
        z = self._convolve(pre, weight)
        if self.pool == "max" and routing is None:
            routing = self._routing_of(z)
        return self._pool(z, routing)

    def forward_with_routing(self, pre, weight):
        """(F(pre), routing) in one convolution."""
        z = self._convolve(pre, weight)
        routing = self._routing_of(z) if self.pool == "max" else None
        return self._pool(z, routing), routing

    def flipped(self, weight):
        """Kernel of the transposed convolution, (k*k*C_out, C_in)."""
        k, c_in = self.kernel, self.pre_shape[2]
        w4 = weight.reshape(k, k, c_in, self.channels)[::-1, ::-1].transpose(0, 1, 3, 2)
        return np.ascontiguousarray(w4).reshape(k * k * self.channels, c_in)

    def backward(self, post, weight, routing=None, flipped=None):
        if self.pool == "max" and routing is None:
            raise ValueError("max pooling needs the routing of the pre layer for its transpose")
        up = self._unpool(post, routing)
        if flipped is None:
            flipped = self.flipped(weight)
        cols = im2col(up, self.kernel, self.kernel - 1 - self.padding)
        return cols @ flipped

    def weight_grad(self, pre, post, routing=None):
        if self.pool == "max" and routing is None:
            raise ValueError("max pooling needs the routing of the pre layer for its weight gradient")
        cols = im2col(pre, self.kernel, self.padding)
        up = self._unpool(post, routing)
        return cols.reshape(-1, cols.shape[-1]).T @ up.reshape(-1, self.channels)

    def bias_sum(self, post):
        """Per-channel biases: sum over batch and space."""
        return post.sum(axis=(0, 1, 2))

    def dense_matrix(self, weight, routing_of=None):
        """The (n_pre, n_post) matrix M with F(pre) = pre_flat @ M (avg / no pooling only); for tests."""
        n_pre = int(np.prod(self.pre_shape))
        basis = np.eye(n_pre, dtype=weight.dtype).reshape((n_pre,) + self.pre_shape)
        return self.forward(basis, weight).reshape(n_pre, -1)
