// Joint posterior of a distributional model (issue #17), sampled with NUTS: one linear predictor
// per distributional parameter (mu, then the family's dpars: sigma, nu, phi, shape, zi, hu),
// each with its own population-level effects and group-level terms; family, links, terms and
// every prior arrive as data (the common data of dist_functions.stan, then this program's own),
// so one compiled program serves every formula and family.
//
// Parameterisation (brms's):
//   beta      population-level coefficients, predictor blocks stacked (K_lp[d] each). The
//             slopes of a block with an intercept are centred (Xc); its intercept is the
//             intercept at the mean of the slopes' columns, restored as b_all (generated
//             quantities). Cumulative: mu's columns are centred and the cutpoints absorb the
//             means (b_cutpoints = cutpoints + means_X . b, clmm's theta).
//   sd_all    group-level SDs, term by term (p_k each); z_all standardized effects, term by
//             term, level by level, the coefficients of a level together (non-centred:
//             r_k = diag(sd_k) L_k z_k); cpc_raw unconstrained canonical partial correlations
//             of the correlated terms, mapped to L_k by Stan's cholesky_factor_corr transform
//             (Jacobian added); Cor_all their correlation matrices, column-major.
//   cutpoints ordered, K - 1 of them (cumulative only).
// Priors: one (code, 3 arguments) row per scalar in the order beta (K_all), sd_all (R),
// cutpoints (n_cat - 1); codes of bayesmix.priors.PRIOR_CODES (0 flat, 1 normal, 2 student_t,
// 3 cauchy, 4 double_exponential, 5 logistic, 6 std_normal, 7 exponential, 8 gamma,
// 9 inv_gamma, 10 lognormal, 11 weibull). prior_scale[i] = 0: beta[i]'s prior is on beta[i]
// itself (the link scale); else it is on the natural-scale parameter dist_linkinv(beta[i],
// prior_scale[i]) (the intercept of a constant dpar, e.g. brms's gamma(2, 0.1) on nu), with
// the log Jacobian of that transform added. LKJ shape per term.
functions {
#include dist_functions.stan
#include joint_priors.stan

  /**
   * log |d x / d eta| of the natural-scale transforms of a constant dpar's intercept.
   */
  real dist_log_jacobian(real eta, int link) {
    if (link == 4 || link == 8) return eta;                           // exp, 1 + exp
    if (link == 1) return log_inv_logit(eta) + log1m_inv_logit(eta);  // inv_logit
    if (link == 5) return 0;
    reject("no natural-scale prior for link code ", link);
  }

  vector dist_effects(vector z_all, vector sd_all, vector cpc_raw, array[] int p_term,
                      array[] int l_term, array[] int cor_term) {
    vector[rows(z_all)] r_all;
    int z_pos = 1;
    int s_pos = 1;
    int c_pos = 1;
    for (k in 1:size(p_term)) {
      int p = p_term[k];
      int l = l_term[k];
      int nc = cor_term[k] ? (p * (p - 1)) %/% 2 : 0;
      matrix[p, l] zk = to_matrix(z_all[z_pos:(z_pos + p * l - 1)], p, l);
      vector[p] sdk = sd_all[s_pos:(s_pos + p - 1)];
      if (cor_term[k]) {
        matrix[p, p] Lk = joint_cholesky_corr(cpc_raw[c_pos:(c_pos + nc - 1)], p);
        r_all[z_pos:(z_pos + p * l - 1)] = to_vector(diag_pre_multiply(sdk, Lk) * zk);
      } else {
        r_all[z_pos:(z_pos + p * l - 1)] = to_vector(diag_pre_multiply(sdk, zk));
      }
      z_pos += p * l;
      s_pos += p;
      c_pos += nc;
    }
    return r_all;
  }
}
data {
  // the common data of the distributional programs (bayesmix.design.dist.dist_stan_data)
  int<lower=1> N;
  int<lower=1, upper=12> family;
  int<lower=1> D;
  array[D] int<lower=1, upper=8> dlink;
  vector[N] Y;
  array[N] int Yi;
  array[N] int<lower=0> trials;
  int<lower=0> n_cat;
  array[D] int<lower=0> K_lp;
  array[D] int<lower=0, upper=1> int_lp;
  int<lower=0> K_all;
  matrix[N, K_all] X;
  int<lower=0, upper=1> has_offset;
  vector[N] offsets;
  int<lower=0> n_terms;
  array[n_terms] int<lower=1, upper=D> lp_term;
  array[n_terms] int<lower=1> p_term;
  array[n_terms] int<lower=1> l_term;
  array[n_terms] int<lower=0, upper=1> cor_term;
  array[n_terms, N] int<lower=1> J;
  int<lower=0> R;
  matrix[N, R] Z;

  // this program's: priors (see the header), prior-only runs, what to keep
  int<lower=0> n_prior;
  array[n_prior] int<lower=0, upper=11> prior_dist;
  array[n_prior] vector[3] prior_args;
  array[K_all] int<lower=0, upper=8> prior_scale;
  array[n_terms] real<lower=0> lkj_eta;
  int<lower=0, upper=1> prior_only;
  int<lower=0, upper=1> save_log_lik;
  int<lower=0, upper=1> save_y_rep;
}
transformed data {
  int n_cut = family == 6 ? n_cat - 1 : 0;
  matrix[N, K_all] Xc = X;          // slopes centred within each block with an intercept
  vector[K_all] means_X = rep_vector(0, K_all);
  int n_z = 0;
  int n_cpc = 0;
  int n_cor = 0;
  {
    int pos = 1;
    for (d in 1:D) {
      int k = K_lp[d];
      int first = int_lp[d] ? pos + 1 : ((family == 6 && d == 1) ? pos : pos + k);
      if (int_lp[d] && k > 0) {
        for (i in 1:N) if (X[i, pos] != 1) reject("X[", i, ", ", pos, "] is not 1: block ", d,
                                                   " has no intercept column first");
      }
      for (j in first:(pos + k - 1)) {
        means_X[j] = mean(X[, j]);
        Xc[, j] = X[, j] - means_X[j];
      }
      pos += k;
    }
    if (pos != K_all + 1) reject("K_all = ", K_all, ", the blocks need ", pos - 1);
  }
  for (k in 1:n_terms) {
    n_z += p_term[k] * l_term[k];
    if (cor_term[k]) {
      n_cpc += (p_term[k] * (p_term[k] - 1)) %/% 2;
      n_cor += p_term[k] * p_term[k];
    }
    if (max(J[k]) != l_term[k]) reject("term ", k, ": levels 1..", l_term[k],
                                       " must all occur in J (max is ", max(J[k]), ")");
  }
  if (n_prior != K_all + R + n_cut) {
    reject("n_prior = ", n_prior, ", expected ", K_all + R + n_cut);
  }
  if (family == 6 && (n_cat < 2 || D != 1)) reject("cumulative: n_cat >= 2 and D = 1 needed");
  if (family != 6 && D < 2) reject("family ", family, " needs D >= 2 predictors");
}
parameters {
  vector[K_all] beta;               // population-level coefficients (centred slopes)
  vector<lower=0>[R] sd_all;        // group-level SDs
  vector[n_z] z_all;                // standardized group-level effects
  vector[n_cpc] cpc_raw;            // unconstrained correlations (Stan's transform)
  ordered[n_cut] cutpoints;         // cumulative: thresholds at the centred predictors
}
transformed parameters {
  vector[n_z] r_all = dist_effects(z_all, sd_all, cpc_raw, p_term, l_term, cor_term);
}
model {
  if (!prior_only) {
    matrix[N, D] par = dist_natural(dist_linpred(N, D, K_lp, Xc, beta, has_offset, offsets,
                                                 r_all, lp_term, p_term, J, Z), dlink);
    target += sum(dist_log_lik(family, dlink[1], Y, Yi, trials, par, cutpoints));
  }
  for (i in 1:K_all) {
    if (prior_scale[i]) {
      target += joint_prior_lupdf(dist_linkinv([beta[i]]', prior_scale[i])[1]
                                 | prior_dist[i], prior_args[i])
                + dist_log_jacobian(beta[i], prior_scale[i]);
    } else {
      target += joint_prior_lupdf(beta[i] | prior_dist[i], prior_args[i]);
    }
  }
  for (i in 1:R) {
    target += joint_prior_lupdf(sd_all[i] | prior_dist[K_all + i], prior_args[K_all + i]);
  }
  for (i in 1:n_cut) {
    target += joint_prior_lupdf(cutpoints[i] | prior_dist[K_all + R + i],
                               prior_args[K_all + R + i]);
  }
  {
    int c_pos = 1;
    for (k in 1:n_terms) {
      if (cor_term[k]) {
        int p = p_term[k];
        int nc = (p * (p - 1)) %/% 2;
        vector[nc] y = cpc_raw[c_pos:(c_pos + nc - 1)];
        target += joint_cholesky_corr_jacobian(y, p);
        target += lkj_corr_cholesky_lupdf(joint_cholesky_corr(y, p) | lkj_eta[k]);
        c_pos += nc;
      }
    }
  }
  target += std_normal_lupdf(z_all);
}
generated quantities {
  // coefficients on X's own scale (intercepts restored), cutpoints at the uncentred predictor
  vector[K_all] b_all = beta;
  vector[n_cut] b_cutpoints = cutpoints;
  vector[n_cor] Cor_all;
  vector[save_log_lik ? N : 0] log_lik;
  array[save_y_rep ? N : 0] real y_rep;
  {
    int pos = 1;
    for (d in 1:D) {
      int k = K_lp[d];
      if (int_lp[d] && k > 1) {
        b_all[pos] = beta[pos] - dot_product(means_X[(pos + 1):(pos + k - 1)],
                                             beta[(pos + 1):(pos + k - 1)]);
      }
      pos += k;
    }
    if (family == 6 && K_lp[1] > 0) {
      b_cutpoints = cutpoints + dot_product(means_X[1:K_lp[1]], beta[1:K_lp[1]]);
    }
  }
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
    matrix[N, D] par = dist_natural(dist_linpred(N, D, K_lp, Xc, beta, has_offset, offsets,
                                                 r_all, lp_term, p_term, J, Z), dlink);
    if (save_log_lik) log_lik = dist_log_lik(family, dlink[1], Y, Yi, trials, par, cutpoints);
    if (save_y_rep) y_rep = dist_y_rng(family, dlink[1], trials, par, cutpoints);
  }
}
