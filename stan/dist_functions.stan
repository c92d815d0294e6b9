// Functions shared by the distributional programs (issue #17): stan/dist_nuts.stan (NUTS) and
// stan/dist_ml.stan (Laplace maximum likelihood) include this file inside their functions
// block. Both read the data of bayesmix.design.dist.dist_stan_data:
//
//   family  1 gaussian, 2 student, 3 lognormal, 4 beta, 5 beta_binomial, 6 cumulative,
//           7 zero_inflated_poisson, 8 zero_inflated_negbinomial, 9 hurdle_poisson,
//           10 hurdle_negbinomial, 11 negbinomial, 12 Gamma
//   D       linear predictors: 1 = mu, 2.. = the family's distributional parameters in
//           bayesmix.families' FamilySpec.dpars order (gaussian sigma; student sigma, nu;
//           lognormal sigma; beta phi; beta_binomial phi; zip zi; zinb shape, zi; hurdle_poisson
//           hu; hurdle_negbinomial shape, hu; negbinomial shape; Gamma shape). Cumulative has
//           mu only (D = 1, the only family with D = 1) and its K - 1 ordered cutpoints.
//   dlink   1 logit, 2 probit, 3 cloglog, 4 log, 5 identity, 6 inverse, 7 sqrt,
//           8 logm1 (x = 1 + exp(eta), student's nu)
//
// Densities are brms's parametrisation with every constant included, equal to
// bayesmix.families' log_density (tests/test_dist_nuts.py checks them against it):
//   gaussian normal(mu, sigma); student student_t(nu, mu, sigma); lognormal lognormal(mu, sigma);
//   beta beta(mu phi, (1 - mu) phi); beta_binomial(trials, mu phi, (1 - mu) phi);
//   cumulative P(y <= k) = F(c_k - eta), F logistic (logit) or standard normal (probit);
//   zero-inflated: P(0) = zi + (1 - zi) f(0), P(y) = (1 - zi) f(y) for y > 0;
//   hurdle: P(0) = hu, P(y) = (1 - hu) f(y) / (1 - f(0)) for y > 0; f poisson(mu) or
//   neg_binomial_2(mu, shape); negbinomial neg_binomial_2(mu, shape); Gamma gamma(shape,
//   shape / mu).

/**
 * The N x D linear predictors. beta holds the D blocks of population-level coefficients
 * stacked (K_lp[d] each, X's blocks side by side in the same order); offsets are added to mu's
 * predictor. Group-level effects r_all: term by term, level by level, the p_k coefficients of a
 * level together (term k, level j, coefficient m at start_k + (j - 1) p_k + m); term k adds to
 * predictor lp_term[k] its coefficients times its p_k columns of Z. start_k needs each term's
 * number of levels, taken as max(J[k]): every level 1..l_k occurs in the data
 * (dist_stan_data's terms index the levels present; the programs check l_term = max(J[k])).
 */
matrix dist_linpred(int N, int D, array[] int K_lp, matrix X, vector beta, int has_offset,
                    vector offsets, vector r_all, array[] int lp_term, array[] int p_term,
                    array[,] int J, matrix Z) {
  matrix[N, D] eta = rep_matrix(0, N, D);
  int pos = 1;
  for (d in 1:D) {
    int k = K_lp[d];
    if (k > 0) eta[, d] = X[, pos:(pos + k - 1)] * beta[pos:(pos + k - 1)];
    pos += k;
  }
  if (has_offset) eta[, 1] += offsets;
  int start = 0;
  int zc = 0;
  for (t in 1:size(p_term)) {
    int p = p_term[t];
    int d = lp_term[t];
    array[N] int idx;
    for (m in 1:p) {
      for (i in 1:N) idx[i] = start + (J[t, i] - 1) * p + m;
      eta[, d] += r_all[idx] .* Z[, zc + m];
    }
    start += p * max(J[t]);
    zc += p;
  }
  return eta;
}

/**
 * One inverse link (code as dlink) applied to a vector.
 */
vector dist_linkinv(vector eta, int link) {
  if (link == 1) return inv_logit(eta);
  if (link == 2) return Phi(eta);
  if (link == 3) return inv_cloglog(eta);
  if (link == 4) return exp(eta);
  if (link == 5) return eta;
  if (link == 6) return inv(eta);
  if (link == 7) return square(eta);
  if (link == 8) return 1 + exp(eta);
  reject("unknown link code ", link);
}

/**
 * The distributional parameters on their natural scale: column d = inverse link dlink[d] of
 * eta's column d. Column 1 is mu on the mean scale, except for cumulative models (D = 1, the
 * only family with a single predictor), whose column 1 stays the linear predictor eta.
 */
matrix dist_natural(matrix eta, array[] int dlink) {
  int D = cols(eta);
  matrix[rows(eta), D] par = eta;
  if (D == 1) return par;
  for (d in 1:D) par[, d] = dist_linkinv(eta[, d], dlink[d]);
  return par;
}

/**
 * log(F(b) - F(a)) for a < b (either may be infinite), F the logistic (link 1) or standard
 * normal (link 2) distribution function, computed from the tail where it loses no digits.
 */
real dist_cum_interval(real a, real b, int link) {
  if (link == 1) {
    if (is_inf(a)) return log_inv_logit(b);
    if (is_inf(b)) return log1m_inv_logit(a);
    return log_inv_logit_diff(b, a);
  }
  if (is_inf(a)) return std_normal_lcdf(b);
  if (is_inf(b)) return std_normal_lcdf(-a);
  if (a > 0) return log_diff_exp(std_normal_lcdf(-a), std_normal_lcdf(-b));
  return log_diff_exp(std_normal_lcdf(b), std_normal_lcdf(a));
}

/**
 * log f(0) of the count part of zero-inflated and hurdle families (shape <= 0: Poisson).
 */
real dist_count_lf0(real mu, real shape, int nb) {
  if (nb) return -shape * log1p(mu / shape);
  return -mu;
}

/**
 * log f(y) of the count part (Poisson or neg_binomial_2).
 */
real dist_count_lpmf(int y, real mu, real shape, int nb) {
  if (nb) return neg_binomial_2_lpmf(y | mu, shape);
  return poisson_lpmf(y | mu);
}

/**
 * Per-row log density of the response, every constant included (par = dist_natural's output;
 * cut = the cutpoints, size 0 unless cumulative; link = dlink[1], used by cumulative).
 */
vector dist_log_lik(int family, int link, vector Y, array[] int Yi, array[] int trials,
                    matrix par, vector cut) {
  int N = rows(Y);
  vector[N] ll;
  if (family == 1) {
    for (i in 1:N) ll[i] = normal_lpdf(Y[i] | par[i, 1], par[i, 2]);
  } else if (family == 2) {
    for (i in 1:N) ll[i] = student_t_lpdf(Y[i] | par[i, 3], par[i, 1], par[i, 2]);
  } else if (family == 3) {
    for (i in 1:N) ll[i] = lognormal_lpdf(Y[i] | par[i, 1], par[i, 2]);
  } else if (family == 4) {
    for (i in 1:N) ll[i] = beta_proportion_lpdf(Y[i] | par[i, 1], par[i, 2]);
  } else if (family == 5) {
    for (i in 1:N) {
      ll[i] = beta_binomial_lpmf(Yi[i] | trials[i], par[i, 1] * par[i, 2],
                                 (1 - par[i, 1]) * par[i, 2]);
    }
  } else if (family == 6) {
    int K = rows(cut) + 1;
    for (i in 1:N) {
      int k = Yi[i];
      real a = k == 1 ? negative_infinity() : cut[k - 1] - par[i, 1];
      real b = k == K ? positive_infinity() : cut[k] - par[i, 1];
      ll[i] = dist_cum_interval(a, b, link);
    }
  } else if (family >= 7 && family <= 10) {
    int nb = family == 8 || family == 10;
    int hurdle = family >= 9;
    int c = nb ? 3 : 2;  // column of zi / hu
    for (i in 1:N) {
      real mu = par[i, 1];
      real shape = nb ? par[i, 2] : 0;
      real q = par[i, c];
      if (hurdle) {
        if (Yi[i] == 0) {
          ll[i] = log(q);
        } else {
          ll[i] = log1m(q) + dist_count_lpmf(Yi[i] | mu, shape, nb)
                  - log1m_exp(dist_count_lf0(mu, shape, nb));
        }
      } else if (Yi[i] == 0) {
        ll[i] = log_sum_exp(log(q), log1m(q) + dist_count_lf0(mu, shape, nb));
      } else {
        ll[i] = log1m(q) + dist_count_lpmf(Yi[i] | mu, shape, nb);
      }
    }
  } else if (family == 11) {
    for (i in 1:N) ll[i] = neg_binomial_2_lpmf(Yi[i] | par[i, 1], par[i, 2]);
  } else if (family == 12) {
    for (i in 1:N) ll[i] = gamma_lpdf(Y[i] | par[i, 2], par[i, 2] / par[i, 1]);
  } else {
    reject("unknown family code ", family);
  }
  return ll;
}

/**
 * A draw of the count part truncated at zero (hurdle families): rejection while the chance of
 * a positive draw is at least 0.1, else an upward walk of the conditional distribution
 * function (then mu is small, the walk short; capped for safety).
 */
int dist_positive_count_rng(real mu, real shape, int nb) {
  real lf0 = dist_count_lf0(mu, shape, nb);
  if (lf0 < log(0.9)) {
    while (1) {
      int y = nb ? neg_binomial_2_rng(mu, shape) : poisson_rng(mu);
      if (y > 0) return y;
    }
  }
  real lp_pos = log1m_exp(lf0);
  real u = uniform_rng(0, 1);
  real cum = 0;
  for (y in 1:1000000) {
    cum += exp(dist_count_lpmf(y | mu, shape, nb) - lp_pos);
    if (u <= cum) return y;
  }
  return 1000000;
}

/**
 * Posterior predictive draws of the response, one per row (arguments as dist_log_lik).
 */
array[] real dist_y_rng(int family, int link, array[] int trials, matrix par, vector cut) {
  int N = rows(par);
  array[N] real y;
  for (i in 1:N) {
    real mu = par[i, 1];
    if (family == 1) {
      y[i] = normal_rng(mu, par[i, 2]);
    } else if (family == 2) {
      y[i] = student_t_rng(par[i, 3], mu, par[i, 2]);
    } else if (family == 3) {
      y[i] = lognormal_rng(mu, par[i, 2]);
    } else if (family == 4) {
      y[i] = beta_proportion_rng(mu, par[i, 2]);
    } else if (family == 5) {
      y[i] = beta_binomial_rng(trials[i], mu * par[i, 2], (1 - mu) * par[i, 2]);
    } else if (family == 6) {
      // latent = eta + noise; the category is 1 + the number of cutpoints below it
      real latent = mu + (link == 1 ? logistic_rng(0, 1) : std_normal_rng());
      int k = 1;
      for (j in 1:rows(cut)) k += latent > cut[j];
      y[i] = k;
    } else if (family >= 7 && family <= 10) {
      int nb = family == 8 || family == 10;
      real shape = nb ? par[i, 2] : 0;
      real q = par[i, nb ? 3 : 2];
      if (bernoulli_rng(q)) {
        y[i] = 0;
      } else if (family >= 9) {
        y[i] = dist_positive_count_rng(mu, shape, nb);
      } else {
        y[i] = nb ? neg_binomial_2_rng(mu, shape) : poisson_rng(mu);
      }
    } else if (family == 11) {
      y[i] = neg_binomial_2_rng(mu, par[i, 2]);
    } else {
      y[i] = gamma_rng(par[i, 2], par[i, 2] / mu);
    }
  }
  return y;
}
