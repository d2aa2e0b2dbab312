"""NTK random features: arc-cosine random features at every ReLU, symmetrized.

neural-tangents' ReLU maps the NNGP to E[relu(w.z) relu(w.z')] and multiplies the NTK by
dSigma = E[1{w.z > 0} 1{w.z' > 0}], w ~ N(0, I). Writing relu(a) = (a + |a|) / 2 and
1{a > 0} = (1 + sgn a) / 2, the odd cross terms vanish in expectation, so

    E[relu(a) relu(b)] = <z, z'> / 4 + E[|a| |b|] / 4
    E[1{a > 0} 1{b > 0}] = 1 / 4 + E[sgn a sgn b] / 4

The features keep the first terms exactly (z / 2, and the constant 1/2) and Monte-Carlo only
the even parts:

    nngp' = [z / 2, |W1^T z| / (2 sqrt m1)]          (z itself, or an SRHT of it when wide)
    ntk'  = ntk (x) [1/2, sgn(W0^T z) / (2 sqrt m0)]  (see `sketches.product`)

This is antithetic sampling (w and -w) in closed form: the same unbiased arc-cosine features
with the odd-part variance removed (3x lower NNGP error at equal width on UCI data, NOTES.md).

Leverage-score sampling (Han et al. 2021) draws the order-1 weights from q(w) ~ |w|^2 N(w; 0, I)
and weights each by sqrt(d) / |w| (N/q = d / |w|^2, so unbiased). The draw is exact: w = r u with
u uniform on the sphere and r^2 ~ chi-square(d + 2), the radial law of the tilted Gaussian. As
|w.z| is positively homogeneous, |w.z| sqrt(d) / |w| = sqrt(d) |u.z|: the tilt removes the radial
randomness, which is where its variance reduction comes from.

Orthogonal random features draw directions in blocks of d orthonormal vectors (each still
uniform on the sphere) with independent radii.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ntkfeat import _random
from ntkfeat.features.ntk_sketch import relu_spec, relu_widths
from ntkfeat.features.state import Features, Spec
from ntkfeat.layers.layers import Relu
from ntkfeat.layers.methods import RandomFeatures
from ntkfeat.sketches.product import offset_product, offset_product_init
from ntkfeat.sketches.srht import srht, srht_init


def sphere_directions(key, dim: int, count: int, orthogonal: bool) -> np.ndarray:
    """(dim, count) unit columns, uniform on the sphere; in orthonormal blocks if `orthogonal`."""
    if not orthogonal:
        g = _random.normal(key, (dim, count))
        return g / np.linalg.norm(g, axis=0, keepdims=True)
    blocks = -(-count // dim)
    return np.concatenate([_random.haar_orthogonal(k, dim) for k in _random.split(key, blocks)], 1)[:, :count]


def gaussian_weights(key, dim: int, count: int, method: RandomFeatures, dtype):
    """(W, column_scale): order-1 weights and the per-feature scale sqrt(1/m) (x leverage weight)."""
    k_dir, k_rad = _random.split(key, 2)
    u = sphere_directions(k_dir, dim, count, method.orthogonal)
    if method.leverage:
        radius = _random.chi(k_rad, dim + 2, count)  # |w| under the tilted law
        scale = np.sqrt(dim / count) / radius  # sqrt(d) / |w|, times sqrt(1/m)
    else:
        radius = _random.chi(k_rad, dim, count)  # |w| for w ~ N(0, I)
        scale = np.full((count,), (1.0 / count) ** 0.5)
    return jnp.asarray(u * radius, dtype), jnp.asarray(scale, dtype)


def relu_init(layer: Relu, key, spec: Spec, method: RandomFeatures, final: bool, dtype):
    m_nngp, m_ntk, m_t = relu_widths(method, spec, final)
    d = spec.nngp_dim
    k_lin, k1, k0, kt = _random.split(key, 4)
    lin_dim = d if d <= m_nngp // 2 else m_nngp // 2
    abs_dim = max(m_nngp - lin_dim, 1)
    w1, scale1 = gaussian_weights(k1, d, abs_dim, method, dtype)
    params = {
        "linear": None if lin_dim == d else srht_init(k_lin, d, lin_dim, dtype),
        "w1": w1, "scale1": scale1, "w0": None, "product": None,
    }
    ntk_width = 0
    if spec.ntk_dim:
        # The constant half of dSigma is kept exactly by the offset product; the sign half
        # uses all m0 = width signs (fewer signs made an exact but noisier product, NOTES.md).
        psi, m0 = spec.ntk_dim, m_t
        params["w0"] = jnp.asarray(sphere_directions(k0, d, m0, method.orthogonal), dtype)
        params["product"], ntk_width = offset_product_init(kt, psi, m0, 0.5, m_ntk, dtype)
    return params, relu_spec(spec, lin_dim + abs_dim, ntk_width)


def relu_apply(layer: Relu, params, spec: Spec, f: Features) -> Features:
    z = f.nngp
    lin = z if params["linear"] is None else srht(params["linear"], z)
    even = jnp.abs(z @ params["w1"].astype(z.dtype)) * params["scale1"].astype(z.dtype)
    nngp = 0.5 * jnp.concatenate([lin, even], axis=-1)
    ntk = None
    if f.ntk is not None:
        m0 = params["w0"].shape[1]
        signs = jnp.sign(z @ params["w0"].astype(z.dtype)) * (0.5 / m0**0.5)
        ntk = offset_product(params["product"], f.ntk, signs)
    diag = None if f.diag is None else f.diag / 2
    return Features(nngp, ntk, diag)
