// Distributional models by Laplace maximum likelihood (glmmTMB's estimator): the per-row log
// density and its first and second derivatives in every linear predictor, and the Laplace
// approximation of the marginal log likelihood with a damped Newton search for the
// conditional mode. Used by dist_ml.stan after dist_functions.stan, whose dist_log_lik gives
// the final value (the per-row values here, equal to it, serve the Newton iterations). The
// numpy mirror is bayesmix/dist/laplace.py; tests/test_dist_ml.py checks its derivatives
// against finite differences of bayesmix.families' log densities.
//
// Model: row i has D linear predictors eta_i = X_i beta + (Z Lambda)_i u (+ offset for mu),
// u ~ N(0, I_Q); Lambda block diagonal, term k's lower Cholesky factor T_k (of its
// covariance, not relative to a scale) repeated for each level. For (beta, cutpoints, theta)
//   log L ~= sum_i l_i(u*) - |u*|^2 / 2 - log|H(u*)| / 2,
//   H(u) = I + sum_i (Z Lambda)_i' W_i (Z Lambda)_i,  W_i = -d^2 l_i / d eta_i d eta_i',
// u* the mode of sum_i l_i(u) - |u|^2 / 2 (TMB's Laplace: the exact Hessian). W_i couples
// predictors only when several carry random effects (e.g. mu and zi of a zero-inflated model).
// When every group-level term has the same grouping factor (e.g. (1 | site) in mu and in zi),
// H is block diagonal, one R x R block per level (R = the columns of Z), and the blocks are
// factored for all levels at once (dml_solve); otherwise H is one dense Q x Q matrix, which
// suits crossed designs of a few hundred levels.
//
// Codes: family 1 gaussian, 2 student, 3 lognormal, 4 beta, 5 beta_binomial, 6 cumulative,
// 7 zero_inflated_poisson, 8 zero_inflated_negbinomial, 9 hurdle_poisson,
// 10 hurdle_negbinomial, 11 negbinomial, 12 Gamma; links 1 logit, 2 probit, 3 cloglog, 4 log,
// 5 identity, 6 inverse, 7 sqrt, 8 logm1 (p = 1 + exp(eta)).
// Parameter columns of par (natural scale): 1 mu, then the family's dpars in order (gaussian,
// lognormal: sigma; student: sigma, nu; beta, beta_binomial: phi; zip: zi; zinb: shape, zi;
// hurdle_poisson: hu; hurdle_negbinomial: shape, hu; negbinomial, Gamma: shape).

/** (p, dp/deta, d^2 p/deta^2) for p = linkinv(eta). */
tuple(vector, vector, vector) dml_link(int link, vector eta) {
  int N = rows(eta);
  if (link == 5) return (eta, rep_vector(1, N), rep_vector(0, N));
  if (link == 4 || link == 8) {
    vector[N] e = exp(eta);
    return (link == 4 ? e : 1 + e, e, e);
  }
  if (link == 1) {
    vector[N] p = inv_logit(eta);
    vector[N] d1 = p .* (1 - p);
    return (p, d1, d1 .* (1 - 2 * p));
  }
  if (link == 2) {
    vector[N] d1 = exp(-0.5 * square(eta) - 0.5 * log(2 * pi()));
    return (Phi(eta), d1, -eta .* d1);
  }
  if (link == 3) {
    vector[N] e = exp(eta);
    vector[N] d1 = exp(eta - e);
    return (-expm1(-e), d1, d1 .* (1 - e));
  }
  if (link == 6) return (inv(eta), -inv(square(eta)), 2 * inv(eta .* square(eta)));
  return (square(eta), 2 * eta, rep_vector(2, N));  // sqrt
}

/** Poisson / NB2 log f(y | mu[, k]) per row: value, d/dmu, d/dk, d2/dmu2, d2/dk2, d2/dmu dk. */
tuple(vector, vector, vector, vector, vector, vector) dml_count(int nb, vector y, vector mu,
                                                               vector k) {
  int N = rows(y);
  if (!nb) {
    return (y .* log(mu) - mu - lgamma(y + 1), y ./ mu - 1, rep_vector(0, N),
            -y ./ square(mu), rep_vector(0, N), rep_vector(0, N));
  }
  vector[N] km = k + mu;
  vector[N] lkm = log(km);
  return (lgamma(y + k) - lgamma(k) - lgamma(y + 1) + k .* (log(k) - lkm) + y .* (log(mu) - lkm),
          y ./ mu - (y + k) ./ km,
          digamma(y + k) - digamma(k) + log(k) + 1 - lkm - (y + k) ./ km,
          -y ./ square(mu) + (y + k) ./ square(km),
          trigamma(y + k) - trigamma(k) + inv(k) - inv(km) - (mu - y) ./ square(km),
          (y - mu) ./ square(km));
}

/** log f(0 | mu[, k]) of the count part and its derivatives (as dml_count). */
tuple(vector, vector, vector, vector, vector, vector) dml_count0(int nb, vector mu, vector k) {
  int N = rows(mu);
  if (!nb) {
    return (-mu, rep_vector(-1, N), rep_vector(0, N), rep_vector(0, N), rep_vector(0, N),
            rep_vector(0, N));
  }
  vector[N] km = k + mu;
  vector[N] lk = log(k) - log(km);
  return (k .* lk, -k ./ km, lk + mu ./ km, k ./ square(km),
          inv(k) - inv(km) - mu ./ square(km), -mu ./ square(km));
}

/**
 * Per row: log density l (all constants), dl/dpar (N x D) and d^2 l/dpar dpar' (N x D^2,
 * column (a - 1) D + b) in the natural parameters par (not cumulative).
 */
tuple(vector, matrix, matrix) dml_natural(int family, matrix par, data vector Y,
                                          data array[] int Yi, data array[] int trials) {
  int N = rows(par);
  int D = cols(par);
  vector[N] lp;
  matrix[N, D] g = rep_matrix(0, N, D);
  matrix[N, D * D] h = rep_matrix(0, N, D * D);
  vector[N] mu = par[ : , 1];
  if (family == 1 || family == 3) {
    vector[N] yy = family == 3 ? log(Y) : Y;
    vector[N] s = par[ : , 2];
    vector[N] z = (yy - mu) ./ s;
    vector[N] s2 = square(s);
    lp = -0.5 * square(z) - log(s) - 0.5 * log(2 * pi());
    if (family == 3) lp -= yy;
    g[ : , 1] = z ./ s;
    g[ : , 2] = (square(z) - 1) ./ s;
    h[ : , 1] = -inv(s2);
    h[ : , 4] = (1 - 3 * square(z)) ./ s2;
    h[ : , 2] = -2 * z ./ s2;
    h[ : , 3] = h[ : , 2];
  } else if (family == 2) {
    vector[N] s = par[ : , 2];
    vector[N] v = par[ : , 3];
    vector[N] r = Y - mu;
    vector[N] s2 = square(s);
    vector[N] r2 = square(r);
    vector[N] A = v .* s2 + r2;
    vector[N] A2 = square(A);
    lp = lgamma((v + 1) / 2) - lgamma(v / 2) - 0.5 * log(v * pi()) - log(s)
         - (v + 1) / 2 .* log1p(r2 ./ (v .* s2));
    g[ : , 1] = (v + 1) .* r ./ A;
    g[ : , 2] = v .* (r2 - s2) ./ (s .* A);
    g[ : , 3] = 0.5 * (digamma((v + 1) / 2) - digamma(v / 2)) + 0.5
                - 0.5 * log1p(r2 ./ (v .* s2)) - (v + 1) .* s2 ./ (2 * A);
    h[ : , 1] = (v + 1) .* (r2 - v .* s2) ./ A2;
    h[ : , 5] = -v ./ s2 - (v + 1) .* v .* (A - 2 * v .* s2) ./ A2;
    h[ : , 9] = 0.25 * (trigamma((v + 1) / 2) - trigamma(v / 2)) + 0.5 * inv(v) - s2 ./ A
                + (v + 1) .* square(s2) ./ (2 * A2);
    h[ : , 2] = -2 * (v + 1) .* r .* v .* s ./ A2;
    h[ : , 3] = r ./ A - (v + 1) .* r .* s2 ./ A2;
    h[ : , 6] = inv(s) - (2 * v + 1) .* s ./ A + (v + 1) .* v .* s .* s2 ./ A2;
    h[ : , 4] = h[ : , 2];
    h[ : , 7] = h[ : , 3];
    h[ : , 8] = h[ : , 6];
  } else if (family == 4 || family == 5) {
    vector[N] phi = par[ : , 2];
    vector[N] a = mu .* phi;
    vector[N] b = (1 - mu) .* phi;
    vector[N] Da;
    vector[N] Db;
    vector[N] Dp;
    vector[N] Taa;
    vector[N] Tbb;
    vector[N] Tpp;
    if (family == 4) {
      vector[N] ly = log(Y);
      vector[N] l1y = log1m(Y);
      lp = (a - 1) .* ly + (b - 1) .* l1y - lbeta(a, b);
      Da = ly - digamma(a);
      Db = l1y - digamma(b);
      Dp = digamma(phi);
      Taa = -trigamma(a);
      Tbb = -trigamma(b);
      Tpp = trigamma(phi);
    } else {
      vector[N] n = to_vector(trials);
      lp = lgamma(n + 1) - lgamma(Y + 1) - lgamma(n - Y + 1) + lbeta(Y + a, n - Y + b)
           - lbeta(a, b);
      Da = digamma(Y + a) - digamma(a);
      Db = digamma(n - Y + b) - digamma(b);
      Dp = digamma(phi) - digamma(n + phi);
      Taa = trigamma(Y + a) - trigamma(a);
      Tbb = trigamma(n - Y + b) - trigamma(b);
      Tpp = trigamma(phi) - trigamma(n + phi);
    }
    g[ : , 1] = phi .* (Da - Db);
    g[ : , 2] = mu .* Da + (1 - mu) .* Db + Dp;
    h[ : , 1] = square(phi) .* (Taa + Tbb);
    h[ : , 4] = square(mu) .* Taa + square(1 - mu) .* Tbb + Tpp;
    h[ : , 2] = (Da - Db) + phi .* (mu .* Taa - (1 - mu) .* Tbb);
    h[ : , 3] = h[ : , 2];
  } else if (family == 11) {
    tuple(vector[N], vector[N], vector[N], vector[N], vector[N], vector[N]) f
        = dml_count(1, Y, mu, par[ : , 2]);
    lp = f.1;
    g[ : , 1] = f.2;
    g[ : , 2] = f.3;
    h[ : , 1] = f.4;
    h[ : , 4] = f.5;
    h[ : , 2] = f.6;
    h[ : , 3] = f.6;
  } else if (family == 12) {
    vector[N] al = par[ : , 2];
    lp = al .* (log(al) - log(mu)) - lgamma(al) + (al - 1) .* log(Y) - al .* Y ./ mu;
    g[ : , 1] = al .* (Y - mu) ./ square(mu);
    g[ : , 2] = log(al) + 1 - log(mu) - digamma(al) + log(Y) - Y ./ mu;
    h[ : , 1] = al ./ square(mu) - 2 * al .* Y ./ (mu .* square(mu));
    h[ : , 4] = inv(al) - trigamma(al);
    h[ : , 2] = (Y - mu) ./ square(mu);
    h[ : , 3] = h[ : , 2];
  } else {
    // zero-inflated (7, 8) and hurdle (9, 10) counts; c the column of zi / hu
    int nb = family == 8 || family == 10;
    int c = nb ? 3 : 2;
    vector[N] k = nb ? par[ : , 2] : rep_vector(1, N);
    vector[N] pz = par[ : , c];
    vector[N] yy;
    for (i in 1:N) yy[i] = Yi[i] == 0 ? 1 : Y[i];  // any positive count where y = 0
    tuple(vector[N], vector[N], vector[N], vector[N], vector[N], vector[N]) f
        = dml_count(nb, yy, mu, k);
    tuple(vector[N], vector[N], vector[N], vector[N], vector[N], vector[N]) f0
        = dml_count0(nb, mu, k);
    for (i in 1:N) {
      // count-part derivatives at this row: first (e1, e2 of log f(0); d1, d2 of log f(y))
      array[2] real e1 = {f0.2[i], f0.3[i]};
      array[2] real d1 = {f.2[i], f.3[i]};
      matrix[2, 2] e2 = [[f0.4[i], f0.6[i]], [f0.6[i], f0.5[i]]];
      matrix[2, 2] d2 = [[f.4[i], f.6[i]], [f.6[i], f.5[i]]];
      if (family <= 8) {
        if (Yi[i] == 0) {
          real F0 = exp(f0.1[i]);
          real P = pz[i] + (1 - pz[i]) * F0;
          real rho = (1 - pz[i]) * F0 / P;
          lp[i] = log_sum_exp(log(pz[i]), log1m(pz[i]) + f0.1[i]);
          g[i, c] = (1 - F0) / P;
          h[i, (c - 1) * D + c] = -square((1 - F0) / P);
          for (a in 1:(c - 1)) {
            g[i, a] = rho * e1[a];
            h[i, (a - 1) * D + c] = -F0 * e1[a] / square(P);
            h[i, (c - 1) * D + a] = h[i, (a - 1) * D + c];
            for (b in a:(c - 1)) {
              h[i, (a - 1) * D + b] = rho * e2[a, b] + rho * (1 - rho) * e1[a] * e1[b];
              h[i, (b - 1) * D + a] = h[i, (a - 1) * D + b];
            }
          }
        } else {
          lp[i] = log1m(pz[i]) + f.1[i];
          g[i, c] = -inv(1 - pz[i]);
          h[i, (c - 1) * D + c] = -inv(square(1 - pz[i]));
          for (a in 1:(c - 1)) {
            g[i, a] = d1[a];
            for (b in a:(c - 1)) {
              h[i, (a - 1) * D + b] = d2[a, b];
              h[i, (b - 1) * D + a] = d2[a, b];
            }
          }
        }
      } else {
        if (Yi[i] == 0) {
          lp[i] = log(pz[i]);
          g[i, c] = inv(pz[i]);
          h[i, (c - 1) * D + c] = -inv(square(pz[i]));
        } else {
          real tau = inv(expm1(-f0.1[i]));  // f(0) / (1 - f(0))
          lp[i] = log1m(pz[i]) + f.1[i] - log1m_exp(f0.1[i]);
          g[i, c] = -inv(1 - pz[i]);
          h[i, (c - 1) * D + c] = -inv(square(1 - pz[i]));
          for (a in 1:(c - 1)) {
            g[i, a] = d1[a] + tau * e1[a];
            for (b in a:(c - 1)) {
              h[i, (a - 1) * D + b] = d2[a, b] + tau * e2[a, b]
                                      + tau * (1 + tau) * e1[a] * e1[b];
              h[i, (b - 1) * D + a] = h[i, (a - 1) * D + b];
            }
          }
        }
      }
    }
  }
  return (lp, g, h);
}

/**
 * Cumulative (link 1 logit, 2 probit): log P(y = k), d/deta and d^2/deta^2 of
 * P(y = k) = F(c_k - eta) - F(c_{k-1} - eta), from the tail where nothing cancels.
 */
tuple(vector, vector, vector) dml_cumulative(int link, data array[] int Yi, vector eta,
                                             vector cut) {
  int N = rows(eta);
  int K = rows(cut) + 1;
  vector[N] lp;
  vector[N] d1;
  vector[N] d2;
  for (i in 1:N) {
    int k = Yi[i];
    real ra = 0;   // f(a) / P
    real rb = 0;   // f(b) / P
    real ha = 0;   // f'(a) / f(a)
    real hb = 0;
    if (k < K) {
      real b = cut[k] - eta[i];
      hb = link == 1 ? -tanh(b / 2) : -b;
    }
    if (k > 1) {
      real a = cut[k - 1] - eta[i];
      ha = link == 1 ? -tanh(a / 2) : -a;
    }
    if (link == 1) {
      if (k == 1) {
        lp[i] = log_inv_logit(cut[1] - eta[i]);
      } else if (k == K) {
        lp[i] = log1m_inv_logit(cut[K - 1] - eta[i]);
      } else {
        real a = cut[k - 1] - eta[i];
        real b = cut[k] - eta[i];
        lp[i] = a > 0 ? log1m_inv_logit(a) + log1m_exp(log1m_inv_logit(b) - log1m_inv_logit(a))
                      : log_inv_logit(b) + log1m_exp(log_inv_logit(a) - log_inv_logit(b));
      }
      if (k < K) {
        real b = cut[k] - eta[i];
        rb = exp(log_inv_logit(b) + log1m_inv_logit(b) - lp[i]);
      }
      if (k > 1) {
        real a = cut[k - 1] - eta[i];
        ra = exp(log_inv_logit(a) + log1m_inv_logit(a) - lp[i]);
      }
    } else {
      if (k == 1) {
        lp[i] = std_normal_lcdf(cut[1] - eta[i] | );
      } else if (k == K) {
        lp[i] = std_normal_lccdf(cut[K - 1] - eta[i] | );
      } else {
        real a = cut[k - 1] - eta[i];
        real b = cut[k] - eta[i];
        lp[i] = a > 0 ? std_normal_lccdf(a | ) + log1m_exp(std_normal_lccdf(b | )
                                                              - std_normal_lccdf(a | ))
                      : std_normal_lcdf(b | ) + log1m_exp(std_normal_lcdf(a | )
                                                            - std_normal_lcdf(b | ));
      }
      if (k < K) {
        real b = cut[k] - eta[i];
        rb = exp(-0.5 * square(b) - 0.5 * log(2 * pi()) - lp[i]);
      }
      if (k > 1) {
        real a = cut[k - 1] - eta[i];
        ra = exp(-0.5 * square(a) - 0.5 * log(2 * pi()) - lp[i]);
      }
    }
    d1[i] = ra - rb;
    d2[i] = rb * hb - ra * ha - square(d1[i]);
  }
  return (lp, d1, d2);
}

/** Per row: l, dl/deta (N x D), d^2 l/deta deta' (N x D^2) at the linear predictors. */
tuple(vector, matrix, matrix) dml_obs(int family, data array[] int dlink, matrix eta,
                                      data vector Y, data array[] int Yi,
                                      data array[] int trials, vector cut) {
  int N = rows(eta);
  int D = cols(eta);
  if (family == 6) {
    tuple(vector[N], vector[N], vector[N]) c = dml_cumulative(dlink[1], Yi, eta[ : , 1], cut);
    return (c.1, to_matrix(c.2), to_matrix(c.3));
  }
  matrix[N, D] par;
  matrix[N, D] p1;
  matrix[N, D] p2;
  for (d in 1:D) {
    tuple(vector[N], vector[N], vector[N]) lk = dml_link(dlink[d], eta[ : , d]);
    par[ : , d] = lk.1;
    p1[ : , d] = lk.2;
    p2[ : , d] = lk.3;
  }
  tuple(vector[N], matrix[N, D], matrix[N, D * D]) nat = dml_natural(family, par, Y, Yi, trials);
  matrix[N, D] g = nat.2 .* p1;
  matrix[N, D * D] h;
  for (a in 1:D) {
    for (b in 1:D) {
      h[ : , (a - 1) * D + b] = nat.3[ : , (a - 1) * D + b] .* p1[ : , a] .* p1[ : , b];
    }
    h[ : , (a - 1) * D + a] += nat.2[ : , a] .* p2[ : , a];
  }
  return (nat.1, g, h);
}

/** The p x p lower factor whose lower triangle, column-major, is theta[start:...]. */
matrix dml_factor(vector theta, int start, int p) {
  matrix[p, p] T = rep_matrix(0, p, p);
  int pos = start;
  for (j in 1:p) {
    for (i in j:p) {
      T[i, j] = theta[pos];
      pos += 1;
    }
  }
  return T;
}

/** eta0 + the random parts (Z Lambda u) of each predictor. */
matrix dml_eta(matrix eta0, matrix zl, data array[,] int col, data array[] int rlp, vector u) {
  matrix[rows(eta0), cols(eta0)] eta = eta0;
  for (r in 1:cols(zl)) {
    eta[ : , rlp[r]] += zl[ : , r] .* u[col[r]];
  }
  return eta;
}

/** H = I + sum_i (Z Lambda)_i' W_i (Z Lambda)_i with W_i = -h_i (N x D^2). */
matrix dml_hessian(matrix zl, matrix h, data array[,] int col, data array[] int rlp, int Q,
                   int D) {
  int N = rows(zl);
  int R = cols(zl);
  matrix[Q, Q] H = diag_matrix(rep_vector(1, Q));
  for (r in 1:R) {
    for (s in 1:R) {
      vector[N] w = -h[ : , (rlp[r] - 1) * D + rlp[s]] .* zl[ : , r] .* zl[ : , s];
      for (i in 1:N) {
        H[col[r, i], col[s, i]] += w[i];
      }
    }
  }
  return H;
}

/** (Z Lambda)' g - u: the gradient of sum l - |u|^2 / 2 in u. */
vector dml_gradient(matrix zl, matrix g, data array[,] int col, data array[] int rlp, vector u) {
  vector[rows(u)] grad = -u;
  for (r in 1:cols(zl)) {
    vector[rows(zl)] v = g[ : , rlp[r]] .* zl[ : , r];
    for (i in 1:rows(zl)) {
      grad[col[r, i]] += v[i];
    }
  }
  return grad;
}

/**
 * (H^-1 g, log|H| / 2) for H = I + sum_i (Z Lambda)_i' W_i (Z Lambda)_i, W_i = -h_i. With
 * exact_first, Newton's own step is tried and hp (a projection of h, dml_psd, positive
 * definite) stands in wherever it fails; without it, H comes from hp alone (the final exact
 * step passes h as hp).
 * blocked: every term has the grouping factor that the CSR matrix agg_* (levels x rows, one 1
 * per row) sums rows by, and u's entry for column a of Z at level j is u[bidx[a, j]]. H is
 * then block diagonal, and each level's R x R block is factored column by column with vectors
 * over the levels (cost linear in the levels); with exact_first from h where that block is
 * positive definite (quadratic convergence near the mode) and from hp, factored only then,
 * where it is not.
 * Otherwise, with exact_first, Newton's own step H^-1 g by an LU factor of H wherever it ascends
 * (g' H^-1 g > 0: near the mode, where H is positive definite, quadratic convergence; its
 * log|H| is then NaN, unused during the iterations), else a Cholesky factor of the H that hp
 * gives.
 */
tuple(vector, real) dml_solve(int blocked, int exact_first, matrix zl, matrix h, matrix hp,
                              vector g, data array[,] int col, data array[] int rlp, int Q, int D,
                              data array[,] int bidx, data vector agg_w,
                              data array[] int agg_v, data array[] int agg_u) {
  int N = rows(zl);
  if (!blocked) {
    if (exact_first) {
      // Newton's own step through an LU factor (no positive-definiteness required) where it
      // ascends; the log determinant is not needed during the iterations
      vector[Q] delta = mdivide_left(dml_hessian(zl, h, col, rlp, Q, D), g);
      real slope = dot_product(g, delta);
      if (slope > 0 && !is_inf(slope)) return (delta, not_a_number());
    }
    matrix[Q, Q] L = cholesky_decompose(dml_hessian(zl, hp, col, rlp, Q, D));
    return (mdivide_right_tri_low(mdivide_left_tri_low(L, g)', L)', sum(log(diagonal(L))));
  }
  int R = cols(zl);
  int nl = size(agg_u) - 1;
  array[2, R, R] vector[nl] Lc;  // Lc[., a, b] (a >= b): entry (a, b) of every level's factor
  vector[nl] pd = rep_vector(1, nl);  // 1 where the block of h is positive definite
  array[R] vector[nl] z;
  vector[Q] out;
  real half_logdet = 0;
  // m = 1: the factor of h (exact_first) or of hp; m = 2: of hp, where h's block is not
  // positive definite
  for (m in 1:2) {
    if (m == 2 && (!exact_first || min(pd) == 1)) break;
    matrix[N, D * D] hm = m == 1 && exact_first ? h : hp;
    for (b in 1:R) {
      for (a in b:R) {
        vector[nl] hab = csr_matrix_times_vector(nl, N, agg_w, agg_v, agg_u,
                                                 -hm[ : , (rlp[a] - 1) * D + rlp[b]]
                                                 .* zl[ : , a] .* zl[ : , b]);
        if (a == b) hab += 1;
        for (c in 1:(b - 1)) hab -= Lc[m, a, c] .* Lc[m, b, c];
        if (a == b && m == 1 && exact_first) {
          for (j in 1:nl) if (!(hab[j] > 1e-8)) pd[j] = 0;
          hab = fmax(hab, 1e-8);  // not used where pd = 0
        }
        Lc[m, a, b] = a == b ? sqrt(hab) : hab ./ Lc[m, b, b];
      }
    }
  }
  for (b in 1:R) {
    if (min(pd) < 1) {
      for (a in b:R) Lc[1, a, b] = pd .* Lc[1, a, b] + (1 - pd) .* Lc[2, a, b];
    }
    half_logdet += sum(log(Lc[1, b, b]));
  }
  for (a in 1:R) {  // forward: L z = g
    z[a] = g[bidx[a]];
    for (c in 1:(a - 1)) z[a] -= Lc[1, a, c] .* z[c];
    z[a] = z[a] ./ Lc[1, a, a];
  }
  for (a in reverse(linspaced_int_array(R, 1, R))) {  // backward: L' x = z
    for (c in (a + 1):R) z[a] -= Lc[1, c, a] .* z[c];
    z[a] = z[a] ./ Lc[1, a, a];
    out[bidx[a]] = z[a];
  }
  return (out, half_logdet);
}

/**
 * The Newton step's second derivatives: -h projected towards positive semi-definite per row
 * over the predictors with random effects (has_re): negative weights to 0, cross weights
 * shrunk to |w_ab| <= sqrt(w_aa w_bb) / (m - 1), m such predictors. With them H >= I, so
 * every step is an ascent direction also where l is not concave (student, zero inflation).
 */
matrix dml_psd(matrix h, data array[] int has_re) {
  int D = size(has_re);
  int m = sum(has_re);
  matrix[rows(h), cols(h)] out = h;
  for (a in 1:D) {
    if (has_re[a]) out[ : , (a - 1) * D + a] = fmin(h[ : , (a - 1) * D + a], 0);
  }
  if (m > 1) {
    for (a in 1:D) {
      for (b in (a + 1):D) {
        if (has_re[a] && has_re[b]) {
          vector[rows(h)] bound = sqrt(out[ : , (a - 1) * D + a] .* out[ : , (b - 1) * D + b])
                                  / (m - 1);
          out[ : , (a - 1) * D + b] = fmax(fmin(h[ : , (a - 1) * D + b], bound), -bound);
          out[ : , (b - 1) * D + a] = out[ : , (a - 1) * D + b];
        }
      }
    }
  }
  return out;
}

/**
 * The Laplace log likelihood and the conditional mode u*. Newton's method from u_start (the
 * mode at the optimizer's starting values; u = 0 where the density is not finite there) with
 * the projected weights of dml_psd and step halving, until the step is below
 * tol (1 + max |u|) or max_iter steps; then one exact Newton step (the true W), which makes
 * the derivatives of u* those of the implicit function (the iterations' own derivatives only
 * converge linearly where the weights were projected). H's factor at u* gives log|H|.
 * blocked, bidx, agg_*: dml_solve's block-diagonal form.
 */
tuple(real, vector) dml_laplace(matrix eta0, matrix zl, data array[,] int col,
                                data array[] int rlp, data array[] int has_re, int Q,
                                int family, data array[] int dlink, data vector Y,
                                data array[] int Yi, data array[] int trials, vector cut,
                                int max_iter, real tol, data vector u_start, int blocked,
                                data array[,] int bidx, data vector agg_w,
                                data array[] int agg_v, data array[] int agg_u) {
  int N = rows(eta0);
  int D = cols(eta0);
  if (Q == 0) {
    return (sum(dist_log_lik(family, dlink[1], Y, Yi, trials, dist_natural(eta0, dlink), cut)),
            rep_vector(0, 0));
  }
  vector[Q] u = u_start;
  tuple(vector[N], matrix[N, D], matrix[N, D * D]) ob
      = dml_obs(family, dlink, dml_eta(eta0, zl, col, rlp, u), Y, Yi, trials, cut);
  real g = sum(ob.1) - 0.5 * dot_self(u);
  if (is_nan(g) || is_inf(g)) {
    u = rep_vector(0, Q);
    ob = dml_obs(family, dlink, eta0, Y, Yi, trials, cut);
    g = sum(ob.1);
  }
  for (it in 1:max_iter) {
    vector[Q] grad = dml_gradient(zl, ob.2, col, rlp, u);
    vector[Q] delta = dml_solve(blocked, 1, zl, ob.3, dml_psd(ob.3, has_re), grad, col, rlp, Q,
                                D, bidx, agg_w, agg_v, agg_u).1;
    real step = 1;
    vector[Q] u_new = u + delta;
    ob = dml_obs(family, dlink, dml_eta(eta0, zl, col, rlp, u_new), Y, Yi, trials, cut);
    real g_new = sum(ob.1) - 0.5 * dot_self(u_new);
    int halvings = 0;
    while (!(g_new >= g - 1e-12 * (1 + abs(g))) && halvings < 40) {
      step *= 0.5;
      u_new = u + step * delta;
      ob = dml_obs(family, dlink, dml_eta(eta0, zl, col, rlp, u_new), Y, Yi, trials, cut);
      g_new = sum(ob.1) - 0.5 * dot_self(u_new);
      halvings += 1;
    }
    u = u_new;
    g = g_new;
    if (step * max(abs(delta)) < tol * (1 + max(abs(u)))) break;
  }
  // the exact Newton step, then log|H| at its end
  u += dml_solve(blocked, 0, zl, ob.3, ob.3, dml_gradient(zl, ob.2, col, rlp, u), col, rlp, Q, D,
                 bidx, agg_w, agg_v, agg_u).1;
  matrix[N, D] eta = dml_eta(eta0, zl, col, rlp, u);
  ob = dml_obs(family, dlink, eta, Y, Yi, trials, cut);
  real half_logdet = dml_solve(blocked, 0, zl, ob.3, ob.3, rep_vector(0, Q), col, rlp, Q, D,
                               bidx, agg_w, agg_v, agg_u).2;
  // the value by the shared densities of dist_functions.stan (equal to ob.1's sum)
  return (sum(dist_log_lik(family, dlink[1], Y, Yi, trials, dist_natural(eta, dlink), cut))
          - 0.5 * dot_self(u) - half_logdet, u);
}
