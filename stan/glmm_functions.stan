// Generalized linear mixed models: the Laplace approximation of the marginal likelihood
// (lme4's glmer with nAGQ = 1; Bates, Maechler, Bolker and Walker 2015, J. Stat. Softw. 67(1)).
//
// Model: y_i | u ~ F(mu_i), g(mu_i) = eta_i = offset_i + x_i' beta + (Z Lambda u)_i, u ~ N(0, I_q).
// Lambda is block diagonal: for term k the lower-triangular p_k x p_k factor T_k (from theta,
// column-major lower triangle, lme4's order) is repeated for each of its levels.
// For given (beta, theta) the conditional mode u* maximises
//   g(u) = log p(y | u) - ||u||^2 / 2
// (found by Newton's method with step halving, in C++: glmm_mode.hpp), and
//   log L ~= log p(y | u*) - ||u*||^2 / 2 - log|L|,  L L' = H = Lambda' Z' W Z Lambda + I_q,
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
 * score d lp / d eta and the Fisher weight mu_eta^2 / Var(y).
 */
tuple(vector, vector, vector) glmm_obs(int family, int link, vector eta, data vector y,
                                       data vector ntr, real phi) {
  int N = rows(eta);
  vector[N] lp;
  vector[N] s;
  vector[N] wf;
  if (family == 1) {
    // binomial: r1 = mu' / mu, r0 = mu' / (1 - mu)
    vector[N] lmu;
    vector[N] l1mu;
    vector[N] r1;
    vector[N] r0;
    if (link == 1) {
      lmu = log_inv_logit(eta);
      l1mu = log1m_inv_logit(eta);
      r1 = exp(l1mu);
      r0 = exp(lmu);
    } else if (link == 2) {
      vector[N] lphi = -0.5 * square(eta) - 0.5 * log(2 * pi());
      for (i in 1:N) {
        lmu[i] = std_normal_lcdf(eta[i] | );
        l1mu[i] = std_normal_lccdf(eta[i] | );
      }
      r1 = exp(lphi - lmu);
      r0 = exp(lphi - l1mu);
    } else if (link == 3) {
      vector[N] ee = exp(eta);
      l1mu = -ee;
      lmu = log1m_exp(-ee);
      r0 = ee;
      r1 = ee ./ expm1(ee);
    } else {
      // log link (eta < 0)
      lmu = eta;
      l1mu = log1m_exp(eta);
      r1 = rep_vector(1, N);
      r0 = exp(eta - l1mu);
    }
    lp = y .* lmu + (ntr - y) .* l1mu;
    s = y .* r1 - (ntr - y) .* r0;
    wf = ntr .* r1 .* r0;
  } else {
    vector[N] mu;
    vector[N] dmu;  // mu'
    vector[N] lmu;
    vector[N] V;    // Var(y | u)
    if (link == 4) {
      mu = exp(eta);
      dmu = mu;
      lmu = eta;
    } else if (link == 5) {
      mu = eta;
      dmu = rep_vector(1, N);
      lmu = log(mu);
    } else if (link == 6) {
      mu = inv(eta);
      dmu = -square(mu);
      lmu = log(mu);
    } else {
      // sqrt
      mu = square(eta);
      dmu = 2 * eta;
      lmu = log(mu);
    }
    if (family == 2) {
      V = mu;
      lp = y .* lmu - mu;
    } else if (family == 3) {
      vector[N] lpm = log(phi + mu);
      V = mu + square(mu) / phi;
      lp = lgamma(y + phi) - lgamma(phi) + phi * (log(phi) - lpm) + y .* (lmu - lpm);
    } else {
      // Gamma with shape phi
      V = square(mu) / phi;
      lp = phi * (log(phi) - lmu - y ./ mu) - lgamma(phi) + (phi - 1) * log(y);
    }
    s = (y - mu) .* dmu ./ V;
    wf = square(dmu) ./ V;
  }
  return (lp, s, wf);
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

// Two functions are C++ (glmm_mode.hpp; stanc --allow-undefined): they work on values, off
// the autodiff tape, with the blocked elimination of the first term (H's leading q1 x q1
// block is block diagonal, one p1 x p1 block per level; H21 is kept as its non-zero cells, and
// the Schur complement S = H22 - L21 L21' is formed from H22's non-zeros and the pairs of
// cells that share a level; bayesmix.lmm.sparsity builds these data).

/**
 * [u*; v]: the conditional mode u*, by Newton's method with step halving on g(u) from u_start
 * (the mode at the optimizer's starting values; u = 0 where g(u_start) is not finite), with the
 * Fisher weights while a Newton weight is negative, until the step is below tol (1 + max|u|),
 * at most max_iter steps; and v = H_N^-1 c, with c the gradient in u of glmm_laplace's value
 * at u* and H_N the Newton matrix -d^2 g / du^2 there. Carries no derivatives.
 */
vector glmm_mode(vector eta0, matrix zl, data array[,] int col, int family, int link,
                 data vector y, data vector ntr, real phi, int max_iter, real tol,
                 data vector u_start, data vector hs_base, data array[] int hs_v,
                 data array[] int hs_u, data array[] int gr_v, data array[] int gr_u,
                 data array[] int cell_row, data array[] int cell_lev, data array[] int lev_u,
                 data array[] int h22_row, data array[] int h22_col, int q1, int p1);

/**
 * log|H| / 2 for H = (Z Lambda)' diag(w) (Z Lambda) + I, with its derivatives in zl and w
 * (from the entries of H^-1 at each row's non-zeros).
 */
real glmm_half_logdet(matrix zl, vector w, data array[,] int col, data vector hs_base,
                      data array[] int hs_v, data array[] int hs_u, data array[] int gr_v,
                      data array[] int gr_u, data array[] int cell_row,
                      data array[] int cell_lev, data array[] int lev_u,
                      data array[] int h22_row, data array[] int h22_col, int q1, int p1);

/**
 * Laplace approximation of log p(y | beta, theta, phi) without the constant of glmm_lp_const,
 * and the conditional mode u*.
 *
 * The value is g(u*) - log|H(u*)| / 2 (lme4's Gamma: see the top of this file), evaluated with
 * u* from glmm_mode as a constant. Its derivative at fixed u* misses the part that runs
 * through the mode, c' d(u*) / dpsi, where c is the value's gradient in u. The implicit function
 * theorem gives d(u*) / dpsi = H_N^-1 d grad g / dpsi, so that part is the derivative of
 * v' grad g(u*) with v = H_N^-1 c fixed: a term whose value is zero (grad g(u*) = 0) and
 * whose tape is one sparse product. q1, p1: columns and coefficients per level of the first
 * term.
 */
tuple(real, vector) glmm_laplace(vector eta0, matrix zl, data array[,] int col, int Q,
                                 int q1, int p1, int family, int link, data vector y,
                                 data vector ntr, real phi, int max_iter, real tol,
                                 data vector u_start, data vector hs_base, data array[] int hs_v,
                                 data array[] int hs_u, data vector gr_w, data array[] int gr_v,
                                 data array[] int gr_u, data array[] int cell_row,
                                 data array[] int cell_lev, data array[] int lev_u,
                                 data array[] int h22_row, data array[] int h22_col) {
  vector[2 * Q] uv = glmm_mode(eta0, zl, col, family, link, y, ntr, phi, max_iter, tol,
                               u_start, hs_base, hs_v, hs_u, gr_v, gr_u, cell_row, cell_lev,
                               lev_u, h22_row, h22_col, q1, p1);
  vector[Q] u = uv[1:Q];
  vector[rows(eta0)] eta = glmm_eta(eta0, zl, col, u);
  tuple(vector[rows(eta0)], vector[rows(eta0)], vector[rows(eta0)]) ob
      = glmm_obs(family, link, eta, y, ntr, phi);
  real value = sum(ob.1) - 0.5 * dot_self(u);
  if (family == 4) {
    // lme4's Gamma: u* and W above with shape 1 (Var = mu^2); the conditional density with
    // the dispersion dev / N (R's Gamma()$aic, which also adds 2 to -2 log L)
    vector[rows(eta)] mu = glmm_mu(link, eta);
    real disp = 2 * sum((y - mu) ./ mu - log(y ./ mu)) / rows(y);
    value = sum(glmm_obs(family, link, eta, y, ntr, inv(disp)).1) - 1 - 0.5 * dot_self(u);
  }
  value += dot_product(uv[(Q + 1):(2 * Q)], glmm_gradient(zl, ob.2, u, gr_w, gr_v, gr_u));
  return (value - glmm_half_logdet(zl, ob.3, col, hs_base, hs_v, hs_u, gr_v, gr_u, cell_row,
                                   cell_lev, lev_u, h22_row, h22_col, q1, p1), u);
}
