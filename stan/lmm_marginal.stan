// Generic marginal posterior of a linear mixed model (gaussian, identity link): NUTS over the
// joint program's shared quantities only -- Intercept (of the centred X), slopes b, the sd's of
// every random-effect term, the Cholesky factors of the correlated terms' correlation matrices
// and sigma -- with the random effects integrated out exactly:
//
//   log p(y | beta, theta, sigma) = -(N log(2 pi sigma^2) + log|A| + ||R' [-beta_c; 1]||^2
//                                     / sigma^2) / 2,
//
// A = Lambda' Z'Z Lambda + I and R from the block-eliminated reduced system of
// lmm_functions.stan (shared with the ML/REML program lmer.stan). The relative factor of term k
// is T_k = diag(sd_k) L_k / sigma (uncorrelated terms: L_k = I), so that
// Cov(b_k) = sigma^2 T_k T_k' = diag(sd_k) L_k L_k' diag(sd_k) as in the joint program.
//
// The term structure and every prior arrive as data, so one compiled program serves every
// gaussian formula. Terms are in the order of the reduced system (most levels first); the data
// are built by bayesmix.bayes.marginal.marginal_stan_data, which also maps the draws back to the
// joint program's names and draws the random effects exactly from their conditional
// distribution given (beta, theta, sigma).
functions {
#include lmm_functions.stan

  /**
   * Log density of one scalar prior given by a code (bayesmix.bayes.marginal.PRIOR_CODES):
   * 0 flat, 1 normal, 2 student_t, 3 cauchy, 4 double_exponential, 5 logistic, 6 std_normal,
   * 7 exponential, 8 gamma, 9 inv_gamma, 10 lognormal, 11 weibull; a holds the arguments.
   */
  real marginal_prior_lpdf(real x, int dist, vector a) {
    if (dist == 0) return 0;
    if (dist == 1) return normal_lpdf(x | a[1], a[2]);
    if (dist == 2) return student_t_lpdf(x | a[1], a[2], a[3]);
    if (dist == 3) return cauchy_lpdf(x | a[1], a[2]);
    if (dist == 4) return double_exponential_lpdf(x | a[1], a[2]);
    if (dist == 5) return logistic_lpdf(x | a[1], a[2]);
    if (dist == 6) return std_normal_lpdf(x);
    if (dist == 7) return exponential_lpdf(x | a[1]);
    if (dist == 8) return gamma_lpdf(x | a[1], a[2]);
    if (dist == 9) return inv_gamma_lpdf(x | a[1], a[2]);
    if (dist == 10) return lognormal_lpdf(x | a[1], a[2]);
    if (dist == 11) return weibull_lpdf(x | a[1], a[2]);
    reject("unknown prior code ", dist);  // stanc counts reject as the function's end
  }

  /**
   * Stan's own transform of K (K - 1) / 2 unconstrained values to the Cholesky factor of a
   * correlation matrix (tanh to canonical partial correlations, then the row-wise
   * construction), returned with the log absolute Jacobian determinant.
   */
  tuple(matrix, real) marginal_cholesky_corr(vector y, int K) {
    matrix[K, K] L = rep_matrix(0, K, K);
    vector[rows(y)] z = tanh(y);
    real lj = sum(log1m(square(z)));
    int pos = 1;
    L[1, 1] = 1;
    for (i in 2:K) {
      L[i, 1] = z[pos];
      pos += 1;
      real ss = square(L[i, 1]);
      for (j in 2:(i - 1)) {
        lj += 0.5 * log1m(ss);
        L[i, j] = z[pos] * sqrt(1 - ss);
        pos += 1;
        ss += square(L[i, j]);
      }
      L[i, i] = sqrt(1 - ss);
    }
    return (L, lj);
  }
}
data {
  // the reduced system (bayesmix.lmm.lmm_stan_data, X = [1, centred slopes] when there is an
  // intercept, y centred when X spans the constant)
  int<lower=1> N;
  int<lower=0> P;
  int<lower=1> n_terms;
  array[n_terms] int<lower=1> p_term;
  array[n_terms] int<lower=1> l_term;
  int<lower=1> n_theta;
  array[n_terms] int<lower=1> theta_start;
  int<lower=0> Q2;
  int<lower=1> M;
  array[l_term[1]] matrix[p_term[1], p_term[1]] C1;
  int<lower=1> ZhZh_nz;
  vector[ZhZh_nz] ZhZh_w;
  array[ZhZh_nz] int<lower=1, upper=M> ZhZh_v;
  array[M + 1] int<lower=1> ZhZh_u;
  int<lower=0, upper=1> diag_q2;           // 1: terms 2..K give a diagonal block (compact K)
  // with diag_q2, K: the rows of vec(Q) = K w that the diagonal path needs, as CSR
  // (k_rows x l_1 p_1^2); else empty
  int<lower=0> K_rows;                      // Q2 + (P + 1) M when diag_q2, else 0
  int<lower=0> K_nz;
  vector[K_nz] K_w;
  array[K_nz] int<lower=1, upper=l_term[1] * p_term[1] * p_term[1]> K_v;
  array[K_rows + 1] int<lower=1> K_u;
  // without diag_q2, B = Z1'Zh level by level: the union of each level's non-zero columns
  // (B_v, level j's from B_u[j]) and each entry's p_1 values (B_w); else empty
  int<lower=0> B_nz;
  vector[B_nz * p_term[1]] B_w;
  array[B_nz] int<lower=1, upper=M> B_v;
  array[diag_q2 ? 1 : l_term[1] + 1] int<lower=1> B_u;
  int<lower=0, upper=1> REML;                // unused (the ML program's flag)

  // parameters
  int<lower=0, upper=1> intercept;           // 1: X[, 1] is the intercept (parameter Intercept)
  vector[P] y_shift;                         // beta_c = beta - y_shift (y was centred)
  array[n_terms] int<lower=0, upper=1> cor_term;  // 1: correlated term (LKJ prior)
  int<lower=0> n_sd;                         // sum of p_k
  int<lower=0> n_cpc;                        // sum over correlated terms of p_k (p_k - 1) / 2

  // priors: one (code, arguments) per scalar, in the order Intercept, b, sd, sigma
  int<lower=1> n_prior;
  array[n_prior] int<lower=0, upper=11> prior_dist;
  array[n_prior] vector[3] prior_args;
  array[n_terms] real<lower=0> lkj_eta;      // LKJ shape per term (correlated terms only)
  int<lower=0, upper=1> prior_only;          // 1: ignore the likelihood
}
transformed data {
  // Zh'Zh: dense, or with diag_q2 only its first Q2 diagonal entries and trailing P + 1 rows
  matrix[diag_q2 ? 0 : M, diag_q2 ? 0 : M] ZhZh_low;
  vector[diag_q2 ? Q2 : 0] zd;
  matrix[diag_q2 ? P + 1 : 0, diag_q2 ? M : 0] zb;
  if (diag_q2) {
    if (K_rows != Q2 + (P + 1) * M) reject("K_rows = ", K_rows, ", expected ", Q2 + (P + 1) * M);
    zd = rep_vector(0, Q2);
    zb = rep_matrix(0, P + 1, M);
    for (a in 1:M) {
      for (k in ZhZh_u[a]:(ZhZh_u[a + 1] - 1)) {
        int b = ZhZh_v[k];
        if (a <= Q2 && b == a) zd[a] = ZhZh_w[k];
        if (a > Q2) zb[a - Q2, b] = ZhZh_w[k];
      }
    }
  } else {
    if (K_rows != 0) reject("K_rows = ", K_rows, ", expected 0 (B holds the dense path's data)");
    ZhZh_low = csr_to_dense_matrix(M, M, ZhZh_w, ZhZh_v, ZhZh_u);
  }
  int Kb = P - intercept;
  {
    int nsd = 0;
    int ncpc = 0;
    for (k in 1:n_terms) {
      nsd += p_term[k];
      if (cor_term[k]) ncpc += (p_term[k] * (p_term[k] - 1)) %/% 2;
    }
    if (nsd != n_sd) reject("n_sd = ", n_sd, ", the terms need ", nsd);
    if (ncpc != n_cpc) reject("n_cpc = ", n_cpc, ", the terms need ", ncpc);
    if (n_prior != P + n_sd + 1) reject("n_prior = ", n_prior, ", expected ", P + n_sd + 1);
  }
}
parameters {
  array[intercept] real Intercept;           // intercept at the mean of the slopes' columns
  vector[Kb] b;                              // population-level slopes
  vector<lower=0>[n_sd] sd_all;              // group-level sd's, term by term
  vector[n_cpc] cpc_raw;                     // unconstrained correlations (Stan's transform)
  real<lower=0> sigma;                       // residual standard deviation
}
model {
  vector[P] beta;
  vector[n_theta] theta;
  if (intercept) {
    beta[1] = Intercept[1];
  }
  beta[(intercept + 1):P] = b;
  {
    int s_pos = 1;
    int c_pos = 1;
    for (k in 1:n_terms) {
      int pk = p_term[k];
      vector[pk] sdk = sd_all[s_pos:(s_pos + pk - 1)];
      matrix[pk, pk] Tk;
      if (cor_term[k]) {
        int nc = (pk * (pk - 1)) %/% 2;
        tuple(matrix[pk, pk], real) Lk = marginal_cholesky_corr(cpc_raw[c_pos:(c_pos + nc - 1)],
                                                                pk);
        target += Lk.2;
        target += lkj_corr_cholesky_lpdf(Lk.1 | lkj_eta[k]);
        Tk = diag_pre_multiply(sdk, Lk.1) / sigma;
        c_pos += nc;
      } else {
        Tk = diag_matrix(sdk / sigma);
      }
      int t = theta_start[k];
      for (j in 1:pk) {
        for (i in j:pk) {
          theta[t] = Tk[i, j];
          t += 1;
        }
      }
      s_pos += pk;
    }
  }
  if (!prior_only) {
    tuple(real, matrix[P + 1, P + 1]) reduced
        = lmm_reduce(theta, P, Q2, p_term, l_term, theta_start, C1, ZhZh_low, K_w, K_v, K_u,
                   B_w, B_v, B_u, diag_q2, zd, zb);
    target += lmm_marginal_loglik(reduced.1, reduced.2, beta - y_shift, sigma, N);
  }
  // priors, in the order of prior_dist
  for (j in 1:P) {
    target += marginal_prior_lpdf(beta[j] | prior_dist[j], prior_args[j]);
  }
  for (j in 1:n_sd) {
    target += marginal_prior_lpdf(sd_all[j] | prior_dist[P + j], prior_args[P + j]);
  }
  target += marginal_prior_lpdf(sigma | prior_dist[n_prior], prior_args[n_prior]);
}
