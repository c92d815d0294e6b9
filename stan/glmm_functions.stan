// Generalized linear mixed models: the Laplace approximation of the marginal likelihood
// (lme4's glmer with nAGQ = 1; Bates, Maechler, Bolker and Walker 2015, J. Stat. Softw. 67(1)).
//
// Model: y_i | u ~ F(mu_i), g(mu_i) = eta_i = offset_i + x_i' beta + (Z Lambda u)_i, u ~ N(0, I_q).
// Lambda is block diagonal: for term k the lower-triangular p_k x p_k factor T_k (from theta,
// column-major lower triangle, lme4's order) is repeated for each of its levels.
// For given (beta, theta) the conditional mode u* maximises
//   g(u) = log p(y | u) - ||u||^2 / 2
// (found here by Newton's method with step halving), and
//   log L ~= log p(y | u*) - ||u*||^2 / 2 - log|L|,  L L' = Lambda' Z' W Z Lambda + I_q,
// W the GLM (Fisher) weights mu_eta^2 / Var(y) at u*, as lme4's PIRLS uses them.
// log p(y | u) is the full log density, with the log binomial coefficients and -log(y!), so the
// value at the optimum is lme4's logLik.
//
// Family codes: 1 binomial (bernoulli = 1 trial), 2 poisson, 3 negative binomial
// (Var = mu + mu^2 / phi, lme4's glmer.nb theta = phi), 4 Gamma, done as lme4 does it: the
// conditional mode and the weights W with shape 1 (Var = mu^2, i.e. minimising the deviance
// plus ||u||^2), then -2 log p(y | u*) from R's Gamma()$aic: the gamma density with dispersion
// dev(u*) / N, plus 2.
// Link codes: 1 logit, 2 probit, 3 cloglog, 4 log, 5 identity, 6 inverse, 7 sqrt.

/**
 * The p x p lower-triangular factor whose lower triangle, column-major, is
 * theta[start : start + p (p + 1) / 2 - 1].
 */
matrix glmm_theta_factor(vector theta, int start, int p) {
  matrix[p, p] Tk = rep_matrix(0, p, p);
  int pos = start;
  for (j in 1:p) {
    for (i in j:p) {
      Tk[i, j] = theta[pos];
      pos += 1;
    }
  }
  return Tk;
}

/**
 * Non-zero values of Z Lambda, row by row: column r of the result holds, for every
 * observation, the entry in column col[r, i] of Z Lambda (Z_ik' T_k for term k).
 */
matrix glmm_zlambda(vector theta, data matrix Zr, array[] int p_term) {
  int N = rows(Zr);
  matrix[N, cols(Zr)] zl;
  int c = 1;
  int pos = 1;
  for (k in 1:size(p_term)) {
    int p = p_term[k];
    matrix[p, p] Tk = glmm_theta_factor(theta, pos, p);
    zl[ : , c:(c + p - 1)] = Zr[ : , c:(c + p - 1)] * Tk;
    c += p;
    pos += (p * (p + 1)) %/% 2;
  }
  return zl;
}

/**
 * eta0 + Z Lambda u from the row-wise non-zeros of Z Lambda.
 */
vector glmm_eta(vector eta0, matrix zl, data array[,] int col, vector u) {
  vector[rows(eta0)] eta = eta0;
  for (r in 1:cols(zl)) {
    eta += zl[ : , r] .* u[col[r]];
  }
  return eta;
}

/**
 * The blocks of H = (Z Lambda)' diag(w) (Z Lambda) + I that the elimination of the first term
 * (q1 columns, p1 per level) uses, by one sparse product, never as a Q x Q matrix. pt holds
 * w_i (Z Lambda)_ir (Z Lambda)_is for every pair s <= r of a row's non-zeros (pair by pair,
 * row by row); the data map `hs` (bayesmix.lmm.sparsity) sends each to its slot:
 *   A   (p1 x q1): the first term's level blocks side by side (level j: columns of j);
 *   Hc  (n_cell x p1): the non-zero cells of H21 (a row of the other terms against a level of
 *       the first term; cell_row, cell_lev), p1 values each;
 *   h22 (n_h22): H22's non-zeros (lower triangle), for the map to S of glmm_block_solve.
 * hs_base holds the identity in the same layout. Data grow with the non-zeros, not with q1 q2.
 */
tuple(matrix, matrix, vector) glmm_hessian_blocks(matrix zl, vector w, int q1, int p1,
                                                  int n_cell, data vector hs_base,
                                                  data vector hs_w, data array[] int hs_v,
                                                  data array[] int hs_u) {
  int N = rows(zl);
  int R = cols(zl);
  vector[N * ((R * (R + 1)) %/% 2)] pt;
  int pos = 0;
  for (r in 1:R) {
    vector[N] a = w .* zl[ : , r];
    for (s in 1:r) {
      pt[(pos + 1):(pos + N)] = a .* zl[ : , s];
      pos += N;
    }
  }
  vector[rows(hs_base)] hv = hs_base
                             + csr_matrix_times_vector(rows(hs_base), rows(pt), hs_w, hs_v,
                                                       hs_u, pt);
  int nA = q1 * p1;
  int nC = n_cell * p1;
  matrix[n_cell, p1] Hc;
  vector[rows(hv) - nA - nC] h22;
  if (n_cell > 0) Hc = to_matrix(hv[(nA + 1):(nA + nC)], p1, n_cell)';
  if (rows(h22) > 0) h22 = hv[(nA + nC + 1):rows(hv)];
  return (to_matrix(hv[1:nA], p1, q1), Hc, h22);
}

/**
 * (Z Lambda)' s - u: the gradient of g(u), by the sparse map `gr` from the row-wise
 * non-zeros (column by column of zl) to the columns of Z Lambda.
 */
vector glmm_gradient(matrix zl, vector s, vector u, data vector gr_w, data array[] int gr_v,
                     data array[] int gr_u) {
  return csr_matrix_times_vector(rows(u), rows(zl) * cols(zl), gr_w, gr_v, gr_u,
                                 to_vector(diag_pre_multiply(s, zl))) - u;
}

/**
 * The mean mu = g^-1(eta).
 */
vector glmm_mu(int link, vector eta) {
  if (link == 1) return inv_logit(eta);
  if (link == 2) return Phi(eta);
  if (link == 3) return -expm1(-exp(eta));
  if (link == 4) return exp(eta);
  if (link == 5) return eta;
  if (link == 6) return inv(eta);
  return square(eta);
}

/**
 * Per observation: the log density without its data-only constant (see glmm_lp_const), the
 * score d lp / d eta, the Newton weight -d^2 lp / d eta^2 (replaced by the Fisher weights when
 * any is negative) and the Fisher weight mu_eta^2 / Var(y).
 */
tuple(vector, vector, vector, vector) glmm_obs(int family, int link, vector eta, data vector y,
                                               data vector ntr, real phi) {
  int N = rows(eta);
  vector[N] lp;
  vector[N] s;
  vector[N] wn;
  vector[N] wf;
  if (family == 1) {
    // binomial: r1 = mu' / mu, r0 = mu' / (1 - mu), h = mu'' / mu'
    vector[N] lmu;
    vector[N] l1mu;
    vector[N] r1;
    vector[N] r0;
    vector[N] h;
    if (link == 1) {
      lmu = log_inv_logit(eta);
      l1mu = log1m_inv_logit(eta);
      r1 = exp(l1mu);
      r0 = exp(lmu);
      h = r1 - r0;
    } else if (link == 2) {
      vector[N] lphi = -0.5 * square(eta) - 0.5 * log(2 * pi());
      for (i in 1:N) {
        lmu[i] = std_normal_lcdf(eta[i] | );
        l1mu[i] = std_normal_lccdf(eta[i] | );
      }
      r1 = exp(lphi - lmu);
      r0 = exp(lphi - l1mu);
      h = -eta;
    } else if (link == 3) {
      vector[N] ee = exp(eta);
      l1mu = -ee;
      lmu = log1m_exp(-ee);
      r0 = ee;
      r1 = ee ./ expm1(ee);
      h = 1 - ee;
    } else {
      // log link (eta < 0)
      lmu = eta;
      l1mu = log1m_exp(eta);
      r1 = rep_vector(1, N);
      r0 = exp(eta - l1mu);
      h = rep_vector(1, N);
    }
    lp = y .* lmu + (ntr - y) .* l1mu;
    s = y .* r1 - (ntr - y) .* r0;
    wf = ntr .* r1 .* r0;
    wn = y .* square(r1) + (ntr - y) .* square(r0) - s .* h;
  } else {
    vector[N] mu;
    vector[N] dmu;  // mu'
    vector[N] h;    // mu'' / mu'
    vector[N] lmu;
    vector[N] V;    // Var(y | u)
    vector[N] dlogV;  // V'(mu) / V
    if (link == 4) {
      mu = exp(eta);
      dmu = mu;
      h = rep_vector(1, N);
      lmu = eta;
    } else if (link == 5) {
      mu = eta;
      dmu = rep_vector(1, N);
      h = rep_vector(0, N);
      lmu = log(mu);
    } else if (link == 6) {
      mu = inv(eta);
      dmu = -square(mu);
      h = -2 * mu;
      lmu = log(mu);
    } else {
      // sqrt
      mu = square(eta);
      dmu = 2 * eta;
      h = inv(eta);
      lmu = log(mu);
    }
    if (family == 2) {
      V = mu;
      dlogV = inv(mu);
      lp = y .* lmu - mu;
    } else if (family == 3) {
      vector[N] lpm = log(phi + mu);
      V = mu + square(mu) / phi;
      dlogV = (1 + 2 * mu / phi) ./ V;
      lp = lgamma(y + phi) - lgamma(phi) + phi * (log(phi) - lpm) + y .* (lmu - lpm);
    } else {
      // Gamma with shape phi
      V = square(mu) / phi;
      dlogV = 2 * inv(mu);
      lp = phi * (log(phi) - lmu - y ./ mu) - lgamma(phi) + (phi - 1) * log(y);
    }
    s = (y - mu) .* dmu ./ V;
    wf = square(dmu) ./ V;
    wn = wf - s .* (h - dmu .* dlogV);
  }
  if (min(wn) < 0) {
    wn = wf;
  }
  return (lp, s, wn, wf);
}

/**
 * The data-only part of log p(y | u): log binomial coefficients, -log(y!) for counts.
 */
real glmm_lp_const(int family, vector y, vector ntr) {
  real c = 0;
  if (family == 1) {
    for (i in 1:rows(y)) {
      c += lchoose(ntr[i], y[i]);
    }
  } else if (family == 2 || family == 3) {
    c = -sum(lgamma(y + 1));
  }
  return c;
}

/**
 * The per-level sums of W's rows (cells sorted by level; lev_u the CSR row starts), as a
 * p1 x l1 matrix: column j holds level j's sum.
 */
matrix glmm_level_sums(matrix W, data vector cell_one, data array[] int cell_seq,
                       data array[] int lev_u, int l1, int p1) {
  matrix[p1, l1] out;
  for (m in 1:p1) {
    out[m] = csr_matrix_times_vector(l1, rows(W), cell_one, cell_seq, lev_u, W[ : , m])';
  }
  return out;
}

/**
 * Solve H x = r for H = Lambda'Z'WZ Lambda + I (given by glmm_hessian_blocks) and return
 * (x, log|H| / 2), by elimination of the first term: H's leading q1 x q1 block is block
 * diagonal (one p1 x p1 block A_j per level), so H = L L' with L = [[L_A, 0], [L21, L_S]],
 * L21 = H21 L_A^-T and L_S the factor of the Schur complement S = H22 - L21 L21': one dense
 * factorization of size q2 = Q - q1 instead of Q. H21 and L21 stay sparse (their non-zero
 * cells); S's update runs over the pairs of cells that share a level of the first term
 * (pair_a >= pair_b), and the map s_w, s_v, s_u sends H22's non-zeros and the pairs' products
 * to S (both triangles), so the cost grows with those pairs, not with q1 q2^2.
 */
tuple(vector, real) glmm_block_solve(tuple(matrix, matrix, vector) H, vector r, int q1, int p1,
                                     data array[] int cell_row, data array[] int cell_lev,
                                     data vector cell_one, data array[] int cell_seq,
                                     data array[] int row_v, data array[] int row_u,
                                     data array[] int lev_u, data array[] int pair_a,
                                     data array[] int pair_b, data vector s_w,
                                     data array[] int s_v, data array[] int s_u) {
  int Q = rows(r);
  int q2 = Q - q1;
  int l1 = q1 %/% p1;
  int n_cell = size(cell_row);
  vector[Q] x;
  real half_logdet = 0;
  vector[q1] y1;
  matrix[n_cell, p1] Lc;                     // L21's cells
  array[p1 > 1 ? l1 : 0] matrix[p1, p1] LA;  // the first term's level factors
  vector[p1 == 1 ? q1 : 0] la;
  if (p1 == 1) {
    la = sqrt(H.1[1]');
    y1 = r[1:q1] ./ la;
    half_logdet = sum(log(la));
    if (n_cell > 0) Lc[ : , 1] = H.2[ : , 1] ./ la[cell_lev];
  } else {
    for (j in 1:l1) {
      int a = (j - 1) * p1 + 1;
      int b = j * p1;
      LA[j] = cholesky_decompose(symmetrize_from_lower_tri(H.1[ : , a:b]));
      y1[a:b] = mdivide_left_tri_low(LA[j], r[a:b]);
      half_logdet += sum(log(diagonal(LA[j])));
    }
    for (c in 1:n_cell) {
      Lc[c] = mdivide_left_tri_low(LA[cell_lev[c]], H.2[c]')';
    }
  }
  vector[q1] z1 = y1;
  if (q2 > 0) {
    vector[size(pair_a)] pv;
    vector[n_cell] cv;
    if (p1 == 1) {
      pv = Lc[pair_a, 1] .* Lc[pair_b, 1];
      cv = Lc[ : , 1] .* y1[cell_lev];
    } else {
      pv = rows_dot_product(Lc[pair_a], Lc[pair_b]);
      matrix[l1, p1] Y1 = to_matrix(y1, p1, l1)';
      cv = rows_dot_product(Lc, Y1[cell_lev]);
    }
    matrix[q2, q2] LS = cholesky_decompose(to_matrix(
        csr_matrix_times_vector(q2 * q2, rows(H.3) + size(pv), s_w, s_v, s_u,
                                append_row(H.3, pv)), q2, q2));
    vector[q2] y2 = mdivide_left_tri_low(LS, r[(q1 + 1):Q]
                                             - csr_matrix_times_vector(q2, n_cell, cell_one,
                                                                       row_v, row_u, cv));
    vector[q2] x2 = mdivide_right_tri_low(y2', LS)';
    x[(q1 + 1):Q] = x2;
    half_logdet += sum(log(diagonal(LS)));
    // z1 = y1 - L21' x2, cell values summed per level of the first term
    matrix[n_cell, p1] W = diag_pre_multiply(x2[cell_row], Lc);
    if (p1 == 1) {
      z1 -= csr_matrix_times_vector(l1, n_cell, cell_one, cell_seq, lev_u, W[ : , 1]);
    } else {
      z1 -= to_vector(glmm_level_sums(W, cell_one, cell_seq, lev_u, l1, p1));
    }
  }
  if (p1 == 1) {
    x[1:q1] = z1 ./ la;
  } else {
    for (j in 1:l1) {
      int a = (j - 1) * p1 + 1;
      int b = j * p1;
      x[a:b] = mdivide_right_tri_low(z1[a:b]', LA[j])';
    }
  }
  return (x, half_logdet);
}

/**
 * Laplace approximation of log p(y | beta, theta, phi) without the constant of glmm_lp_const,
 * and the conditional mode u*.
 *
 * q1, p1: columns and coefficients per level of the first term (see glmm_block_solve).
 * Newton's method on g(u) from u_start (the conditional mode at the optimizer's starting
 * values, which saves a quarter of the steps over u = 0; u = 0 where g(u_start) is not
 * finite) with step halving until the step is below
 * tol (1 + max|u|), at most max_iter steps; autodiff runs through the iterations, whose
 * derivatives converge with them (Newton's map has zero Jacobian at its fixed point).
 */
tuple(real, vector) glmm_laplace(vector eta0, matrix zl, data array[,] int col, int Q,
                                 int q1, int p1, int family, int link, data vector y,
                                 data vector ntr, real phi, int max_iter, real tol,
                                 data vector u_start,
                                 data vector hs_base, data vector hs_w, data array[] int hs_v, data array[] int hs_u,
                                 data vector gr_w, data array[] int gr_v, data array[] int gr_u,
                                 data array[] int cell_row, data array[] int cell_lev,
                                 data vector cell_one, data array[] int cell_seq,
                                 data array[] int row_v, data array[] int row_u,
                                 data array[] int lev_u, data array[] int pair_a,
                                 data array[] int pair_b, data vector s_w,
                                 data array[] int s_v, data array[] int s_u) {
  int n_cell = size(cell_row);
  vector[Q] u = u_start;
  vector[rows(eta0)] eta = glmm_eta(eta0, zl, col, u);
  tuple(vector[rows(eta0)], vector[rows(eta0)], vector[rows(eta0)], vector[rows(eta0)]) ob
      = glmm_obs(family, link, eta, y, ntr, phi);
  real g = sum(ob.1) - 0.5 * dot_self(u);
  if (is_nan(g) || is_inf(g)) {
    // u_start leaves the means' range here (e.g. an identity link): start from u = 0
    u = rep_vector(0, Q);
    eta = glmm_eta(eta0, zl, col, u);
    ob = glmm_obs(family, link, eta, y, ntr, phi);
    g = sum(ob.1);
  }
  for (it in 1:max_iter) {
    vector[Q] delta = glmm_block_solve(glmm_hessian_blocks(zl, ob.3, q1, p1, n_cell,
                                                           hs_base, hs_w, hs_v, hs_u),
                                       glmm_gradient(zl, ob.2, u, gr_w, gr_v, gr_u), q1, p1,
                                       cell_row, cell_lev, cell_one, cell_seq, row_v, row_u, lev_u, pair_a,
                                       pair_b, s_w, s_v, s_u).1;
    real step = 1;
    vector[Q] u_new = u + delta;
    eta = glmm_eta(eta0, zl, col, u_new);
    ob = glmm_obs(family, link, eta, y, ntr, phi);
    real g_new = sum(ob.1) - 0.5 * dot_self(u_new);
    int halvings = 0;
    while (!(g_new >= g - 1e-10 * (1 + abs(g))) && halvings < 30) {
      step *= 0.5;
      u_new = u + step * delta;
      eta = glmm_eta(eta0, zl, col, u_new);
      ob = glmm_obs(family, link, eta, y, ntr, phi);
      g_new = sum(ob.1) - 0.5 * dot_self(u_new);
      halvings += 1;
    }
    u = u_new;
    g = g_new;
    if (step * max(abs(delta)) < tol * (1 + max(abs(u)))) {
      break;
    }
  }
  real half_logdet = glmm_block_solve(glmm_hessian_blocks(zl, ob.4, q1, p1, n_cell,
                                                          hs_base, hs_w, hs_v, hs_u),
                                      rep_vector(0, Q), q1, p1,
                                      cell_row, cell_lev, cell_one, cell_seq, row_v, row_u, lev_u, pair_a,
                                       pair_b, s_w, s_v, s_u).2;
  real value = g;
  if (family == 4) {
    // lme4's Gamma: u* and W above with shape 1 (Var = mu^2); the conditional density with
    // the dispersion dev / N (R's Gamma()$aic, which also adds 2 to -2 log L)
    vector[rows(eta)] mu = glmm_mu(link, eta);
    real disp = 2 * sum((y - mu) ./ mu - log(y ./ mu)) / rows(y);
    value = sum(glmm_obs(family, link, eta, y, ntr, inv(disp)).1) - 1 - 0.5 * dot_self(u);
  }
  return (value - half_logdet, u);
}
