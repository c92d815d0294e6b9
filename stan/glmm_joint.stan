// Generic joint (brms-style) program of a (generalized) linear mixed model, sampled with NUTS.
// rstanarm's approach: the term structure, the family, the link, offsets, trials, weights and
// every prior arrive as DATA, so one compiled program serves every formula. It computes the
// same log density as the per-formula program bayesmix.stancode.joint generates (same
// parameterisation, same priors, the same *_glm likelihoods where they apply, the same
// constants dropped), under flat names that bayesmix.bayes.generic maps back to the
// generated program's per-term names (sd_k, z_k, L_k, r_k, Cor_k).
//
// Layout, term k = 1..n_terms with p_k coefficients and l_k levels:
//   sd_all   the terms' standard deviations, term by term (p_k each);
//   z_all    standardized effects, term by term, level by level, coefficients of a level
//            together (= to_vector of the generated program's M_k x N_k matrix z_k); for a
//            centred term the block holds the effects themselves (= to_vector(r_k'));
//   cpc_raw  unconstrained canonical partial correlations of the correlated terms
//            (p_k (p_k - 1) / 2 each), mapped to the Cholesky factor L_k by Stan's own
//            cholesky_factor_corr transform, Jacobian included;
//   r_all    group-level effects in z_all's layout: r_k = (diag(sd_k) L_k z_k)';
//   Cor_all  correlation matrices of the correlated terms, column-major (p_k^2 each).
// Population level: X's first column is the intercept when has_intercept = 1; the slopes'
// columns are centred (Xc) and Intercept is the intercept at the mean of X, restored as
// b_Intercept = Intercept - dot_product(means_X, b).
//
// Family codes: 1 gaussian, 2 binomial, 3 bernoulli, 4 poisson, 5 negative binomial
// (neg_binomial_2, phi), 6 Gamma (shape; rate = shape / mean).
// Link codes (as glmer.stan): 1 logit, 2 probit, 3 cloglog, 4 log, 5 identity, 6 inverse,
// 7 sqrt.
// Prior codes (bayesmix.bayes.marginal.PRIOR_CODES): 0 flat, 1 normal, 2 student_t, 3 cauchy,
// 4 double_exponential, 5 logistic, 6 std_normal, 7 exponential, 8 gamma, 9 inv_gamma,
// 10 lognormal, 11 weibull; one (code, 3 arguments) per scalar in the order Intercept, b,
// sd_all, then the family parameter (sigma, phi or shape); LKJ shape per term.
functions {
#include joint_priors.stan

  /**
   * The group-level effects r_all from the standardized ones (centred terms: copied).
   */
  vector joint_effects(vector z_all, vector sd_all, vector cpc_raw, array[] int p_term,
                       array[] int l_term, array[] int cor_term, array[] int cen_term) {
    vector[rows(z_all)] r_all;
    int z_pos = 1;
    int s_pos = 1;
    int c_pos = 1;
    for (k in 1:size(p_term)) {
      int p = p_term[k];
      int l = l_term[k];
      int nc = cor_term[k] ? (p * (p - 1)) %/% 2 : 0;
      if (cen_term[k]) {
        r_all[z_pos:(z_pos + p * l - 1)] = z_all[z_pos:(z_pos + p * l - 1)];
      } else {
        matrix[p, l] zk = to_matrix(z_all[z_pos:(z_pos + p * l - 1)], p, l);
        vector[p] sdk = sd_all[s_pos:(s_pos + p - 1)];
        if (cor_term[k]) {
          matrix[p, p] Lk = joint_cholesky_corr(cpc_raw[c_pos:(c_pos + nc - 1)], p);
          r_all[z_pos:(z_pos + p * l - 1)] = to_vector(diag_pre_multiply(sdk, Lk) * zk);
        } else {
          r_all[z_pos:(z_pos + p * l - 1)] = to_vector(diag_pre_multiply(sdk, zk));
        }
      }
      z_pos += p * l;
      s_pos += p;
      c_pos += nc;
    }
    return r_all;
  }

  /**
   * The linear predictor: Intercept (+ Xc * b when with_x) + offsets + group-level effects.
   */
  vector joint_eta(int N, array[] real Intercept, matrix Xc, vector b, int with_x,
                   vector offsets, int has_offset, vector r_all, array[,] int ridx,
                   array[] vector Zc, array[] int p_term) {
    vector[N] mu = rep_vector(size(Intercept) ? Intercept[1] : 0.0, N);
    if (with_x) mu += Xc * b;
    if (has_offset) mu += offsets;
    int c = 1;
    for (k in 1:size(p_term)) {
      vector[N] term = r_all[ridx[c]] .* Zc[c];
      for (m in 2:p_term[k]) {
        term += r_all[ridx[c + m - 1]] .* Zc[c + m - 1];
      }
      mu += term;
      c += p_term[k];
    }
    return mu;
  }

  /**
   * The mean of the response from the linear predictor (the inverse link).
   */
  vector joint_mean(vector mu, int link) {
    if (link == 1) return inv_logit(mu);
    if (link == 2) return Phi(mu);
    if (link == 3) return inv_cloglog(mu);
    if (link == 4) return exp(mu);
    if (link == 5) return mu;
    if (link == 6) return inv(mu);
    return square(mu);
  }

  /**
   * The Gamma rate shape / mean, written as the generated program writes it.
   */
  vector joint_gamma_rate(vector mu, int link, real shape) {
    if (link == 6) return shape * mu;
    if (link == 4) return shape * exp(-mu);
    return shape * inv(mu);
  }

  /**
   * The full log density (constants included) of observations y (yi for the discrete
   * families) given the linear predictor mu.
   */
  real joint_loglik(vector y, array[] int yi, array[] int trials, vector mu, int family,
                    int link, real aux) {
    if (family == 1) return normal_lpdf(y | joint_mean(mu, link), aux);
    if (family == 2) {
      if (link == 1) return binomial_logit_lpmf(yi | trials, mu);
      return binomial_lpmf(yi | trials, joint_mean(mu, link));
    }
    if (family == 3) {
      if (link == 1) return bernoulli_logit_lpmf(yi | mu);
      return bernoulli_lpmf(yi | joint_mean(mu, link));
    }
    if (family == 4) {
      if (link == 4) return poisson_log_lpmf(yi | mu);
      return poisson_lpmf(yi | joint_mean(mu, link));
    }
    if (family == 5) {
      if (link == 4) return neg_binomial_2_log_lpmf(yi | mu, aux);
      return neg_binomial_2_lpmf(yi | joint_mean(mu, link), aux);
    }
    return gamma_lpdf(y | aux, joint_gamma_rate(mu, link, aux));
  }
}
data {
  int<lower=1> N;                             // observations
  vector[N] Y;                                // response (binomial: successes)
  int<lower=1, upper=6> family;               // family code (see above)
  int<lower=1, upper=7> link;                 // link code (see above)
  array[N] int<lower=0> trials;               // binomial trials (unused otherwise)
  int<lower=0, upper=1> has_weights;          // 1: weight each observation's log density
  vector<lower=0>[N] weights;                 // likelihood weights (unused unless has_weights)
  int<lower=0> K;                             // population-level columns of X
  matrix[N, K] X;                             // population-level design matrix
  int<lower=0, upper=1> has_intercept;        // 1: X[, 1] is the intercept
  int<lower=0, upper=1> has_offset;           // 1: add offsets to the linear predictor
  vector[N] offsets;                          // offset (unused unless has_offset)
  int<lower=0> n_terms;                       // group-level terms
  array[n_terms] int<lower=1> p_term;         // coefficients per level (M_k)
  array[n_terms] int<lower=1> l_term;         // levels (N_k)
  array[n_terms] int<lower=0, upper=1> cor_term;  // 1: correlated coefficients (LKJ prior)
  array[n_terms] int<lower=0, upper=1> cen_term;  // 1: centred parameterisation
  array[n_terms, N] int<lower=1> J;           // level of each observation in each term
  int<lower=0> R;                             // sum of p_k
  matrix[N, R] Z;                             // the terms' covariates, term by term

  // priors: one (code, arguments) per scalar, in the order Intercept, b, sd_all, family
  // parameter; the LKJ shape of each term (used for correlated terms)
  int<lower=0> n_prior;
  array[n_prior] int<lower=0, upper=11> prior_dist;
  array[n_prior] vector[3] prior_args;
  array[n_terms] real<lower=0> lkj_eta;

  int<lower=0, upper=1> prior_only;           // 1: ignore the likelihood (prior predictive)
  int<lower=0, upper=1> save_log_lik;         // 1: store the pointwise log-likelihood
  int<lower=0, upper=1> save_y_rep;           // 1: store posterior predictive draws
}
transformed data {
  int Kc = K - has_intercept;                 // population-level slopes
  matrix[N, Kc] Xc;                           // X without the intercept, centred
  vector[Kc] means_X;                         // column means of X before centring
  int discrete = family >= 2 && family <= 5;
  array[discrete ? N : 0] int Yi;             // the response as integers (discrete families)
  int has_sigma = family == 1;
  int has_phi = family == 5;
  int has_shape = family == 6;
  int n_aux = has_sigma + has_phi + has_shape;
  int n_sd = 0;
  int n_z = 0;
  int n_cpc = 0;
  int n_cor = 0;
  int n_nc = 0;                               // standardized (non-centred) effects
  // the *_glm likelihoods (brms's choice): gaussian identity, bernoulli logit, poisson log,
  // negative binomial log; never with weights
  int glm = !has_weights && ((family == 1 && link == 5) || (family == 3 && link == 1)
                             || (family == 4 && link == 4) || (family == 5 && link == 4));
  if (has_intercept) {
    for (i in 2:K) {
      means_X[i - 1] = mean(X[, i]);
      Xc[, i - 1] = X[, i] - means_X[i - 1];
    }
  } else {
    Xc = X;
  }
  for (k in 1:n_terms) {
    n_sd += p_term[k];
    n_z += p_term[k] * l_term[k];
    if (!cen_term[k]) n_nc += p_term[k] * l_term[k];
    if (cor_term[k]) {
      n_cpc += (p_term[k] * (p_term[k] - 1)) %/% 2;
      n_cor += p_term[k] * p_term[k];
    }
  }
  array[n_nc] int nc_idx;                     // positions of the standardized effects in z_all
  array[R, N] int ridx;                       // r_all position of each observation's effect
  array[R] vector[N] Zc;                      // Z's columns
  {
    int z_pos = 0;
    int c = 0;
    int q = 0;
    for (k in 1:n_terms) {
      for (m in 1:p_term[k]) {
        c += 1;
        for (i in 1:N) {
          if (J[k, i] > l_term[k]) reject("J[", k, ", ", i, "] = ", J[k, i],
                                          " exceeds l_term[", k, "] = ", l_term[k]);
          ridx[c, i] = z_pos + (J[k, i] - 1) * p_term[k] + m;
        }
        Zc[c] = Z[, c];
      }
      if (!cen_term[k]) {
        for (j in 1:(p_term[k] * l_term[k])) nc_idx[q + j] = z_pos + j;
        q += p_term[k] * l_term[k];
      }
      z_pos += p_term[k] * l_term[k];
    }
    if (c != R) reject("R = ", R, ", the terms need ", c);
  }
  if (n_prior != has_intercept + Kc + n_sd + n_aux) {
    reject("n_prior = ", n_prior, ", expected ", has_intercept + Kc + n_sd + n_aux);
  }
  if ((family == 2 || family == 3) && link > 4) {
    reject("link code ", link, " is not available for the binomial / bernoulli family");
  }
  if ((family == 4 || family == 5) && link != 4 && link != 5 && link != 7) {
    reject("link code ", link, " is not available for the poisson / negative binomial family");
  }
  if (family == 6 && link != 4 && link != 5 && link != 6) {
    reject("link code ", link, " is not available for the Gamma family");
  }
  if (family == 1 && link != 4 && link != 5 && link != 6) {
    reject("link code ", link, " is not available for the gaussian family");
  }
  if (discrete) {
    Yi = to_int(to_array_1d(Y));
    for (i in 1:N) {
      if (Yi[i] != Y[i] || Yi[i] < 0) reject("Y[", i, "] = ", Y[i], " is not a count");
      if (family == 3 && Yi[i] > 1) reject("Y[", i, "] = ", Y[i], " is not 0 or 1");
      if (family == 2 && Yi[i] > trials[i]) reject("Y[", i, "] exceeds trials[", i, "]");
    }
  }
}
parameters {
  array[has_intercept] real Intercept;        // intercept at the mean of X (centred X)
  vector[Kc] b;                               // population-level slopes
  vector<lower=0>[n_sd] sd_all;               // group-level standard deviations
  vector[n_z] z_all;                          // standardized group-level effects
  vector[n_cpc] cpc_raw;                      // unconstrained correlations (Stan's transform)
  array[has_sigma] real<lower=0> sigma;       // residual standard deviation
  array[has_phi] real<lower=0> phi;           // negative binomial precision
  array[has_shape] real<lower=0> shape;       // Gamma shape
}
transformed parameters {
  // group-level effects: term by term, level by level
  vector[n_z] r_all = joint_effects(z_all, sd_all, cpc_raw, p_term, l_term, cor_term,
                                    cen_term);
}
model {
  real aux = has_sigma ? sigma[1] : (has_phi ? phi[1] : (has_shape ? shape[1] : 1.0));
  // likelihood (skipped for prior predictive draws, prior_only = 1)
  if (!prior_only) {
    vector[N] mu = joint_eta(N, Intercept, Xc, b, !glm, offsets, has_offset, r_all, ridx, Zc,
                             p_term);
    if (glm) {
      if (family == 1) target += normal_id_glm_lpdf(Y | Xc, mu, b, aux);
      else if (family == 3) target += bernoulli_logit_glm_lpmf(Yi | Xc, mu, b);
      else if (family == 4) target += poisson_log_glm_lpmf(Yi | Xc, mu, b);
      else target += neg_binomial_2_log_glm_lpmf(Yi | Xc, mu, b, aux);
    } else if (has_weights) {
      for (n in 1:N) {
        target += weights[n] * joint_loglik(Y[n:n], discrete ? Yi[n:n] : Yi, trials[n:n],
                                            mu[n:n], family, link, aux);
      }
    } else {
      target += joint_loglik(Y, Yi, trials, mu, family, link, aux);
    }
  }
  // priors
  {
    int j = 1;
    if (has_intercept) {
      target += joint_prior_lupdf(Intercept[1] | prior_dist[j], prior_args[j]);
      j += 1;
    }
    for (i in 1:Kc) {
      target += joint_prior_lupdf(b[i] | prior_dist[j], prior_args[j]);
      j += 1;
    }
    for (i in 1:n_sd) {
      target += joint_prior_lupdf(sd_all[i] | prior_dist[j], prior_args[j]);
      j += 1;
    }
    if (n_aux) {
      target += joint_prior_lupdf(aux | prior_dist[j], prior_args[j]);
    }
  }
  {
    int z_pos = 1;
    int s_pos = 1;
    int c_pos = 1;
    for (k in 1:n_terms) {
      int p = p_term[k];
      int l = l_term[k];
      int nc = cor_term[k] ? (p * (p - 1)) %/% 2 : 0;
      matrix[p, p] Lk = diag_matrix(rep_vector(1, p));
      if (cor_term[k]) {
        vector[nc] y = cpc_raw[c_pos:(c_pos + nc - 1)];
        Lk = joint_cholesky_corr(y, p);
        target += joint_cholesky_corr_jacobian(y, p);
        target += lkj_corr_cholesky_lupdf(Lk | lkj_eta[k]);
      }
      if (cen_term[k]) {
        // centred: each level's row ~ multi_normal(0, diag(sd_k) Cor_k diag(sd_k))
        matrix[p, l] rk = to_matrix(z_all[z_pos:(z_pos + p * l - 1)], p, l);
        vector[p] sdk = sd_all[s_pos:(s_pos + p - 1)];
        if (cor_term[k]) {
          matrix[p, p] L_Sigma = diag_pre_multiply(sdk, Lk);
          for (j in 1:l) {
            target += multi_normal_cholesky_lupdf(rk[, j] | rep_vector(0, p), L_Sigma);
          }
        } else {
          for (m in 1:p) {
            target += normal_lupdf(rk[m] | 0, sdk[m]);
          }
        }
      }
      z_pos += p * l;
      s_pos += p;
      c_pos += nc;
    }
  }
  target += std_normal_lupdf(z_all[nc_idx]);
}
generated quantities {
  // the intercept on the original scale of X
  array[has_intercept] real b_Intercept;
  // correlation matrices of the correlated terms, column-major, term by term
  vector[n_cor] Cor_all;
  // pointwise log-likelihood and posterior predictive draws
  vector[save_log_lik ? N : 0] log_lik;
  array[save_y_rep ? N : 0] real y_rep;
  if (has_intercept) b_Intercept[1] = Intercept[1] - dot_product(means_X, b);
  {
    int pos = 1;
    int c_pos = 1;
    for (k in 1:n_terms) {
      if (cor_term[k]) {
        int p = p_term[k];
        int nc = (p * (p - 1)) %/% 2;
        matrix[p, p] Lk = joint_cholesky_corr(cpc_raw[c_pos:(c_pos + nc - 1)], p);
        Cor_all[pos:(pos + p * p - 1)] = to_vector(multiply_lower_tri_self_transpose(Lk));
        pos += p * p;
        c_pos += nc;
      }
    }
  }
  if (save_log_lik || save_y_rep) {
    real aux = has_sigma ? sigma[1] : (has_phi ? phi[1] : (has_shape ? shape[1] : 1.0));
    vector[N] mu = joint_eta(N, Intercept, Xc, b, 1, offsets, has_offset, r_all, ridx, Zc,
                             p_term);
    if (save_log_lik) {
      for (n in 1:N) {
        log_lik[n] = (has_weights ? weights[n] : 1.0)
                     * joint_loglik(Y[n:n], discrete ? Yi[n:n] : Yi, trials[n:n], mu[n:n],
                                    family, link, aux);
      }
    }
    if (save_y_rep) {
      if (family == 1) {
        y_rep = normal_rng(joint_mean(mu, link), aux);
      } else if (family == 2) {
        y_rep = binomial_rng(trials, joint_mean(mu, link));
      } else if (family == 3) {
        y_rep = link == 1 ? bernoulli_logit_rng(mu) : bernoulli_rng(joint_mean(mu, link));
      } else if (family == 4) {
        y_rep = link == 4 ? poisson_log_rng(mu) : poisson_rng(joint_mean(mu, link));
      } else if (family == 5) {
        y_rep = link == 4 ? neg_binomial_2_log_rng(mu, aux)
                          : neg_binomial_2_rng(joint_mean(mu, link), aux);
      } else {
        y_rep = gamma_rng(aux, joint_gamma_rate(mu, link, aux));
      }
    }
  }
}
