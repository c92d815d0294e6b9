// Generic maximum likelihood / REML fit of a linear mixed model (lme4's lmer), any number of
// random-effect terms of any size: the term structure arrives as data, so one compiled program
// serves every lmer formula.
//
// The only parameters are the relative covariance factors theta (lme4's order, unconstrained:
// the deviance is unchanged when a column of T_k changes sign). beta and sigma are profiled out.
// Optimise with jacobian = false: target = -deviance / 2 = lme4's logLik (REML: -REMLcrit / 2).
// Start at theta = identity (theta = 0 is a stationary point). Data and estimates at the optimum:
// bayesmix.lmm.lmm_stan_data and bayesmix.lmm.lmm_estimates.
functions {
#include lmm_functions.stan
}
data {
  int<lower=1> N;                           // observations
  int<lower=0> P;                           // fixed-effect columns
  int<lower=1> n_terms;                     // random-effect terms, most levels first
  array[n_terms] int<lower=1> p_term;       // coefficients per term
  array[n_terms] int<lower=1> l_term;       // levels per term
  int<lower=1> n_theta;                     // sum of p_k (p_k + 1) / 2
  array[n_terms] int<lower=1> theta_start;  // first index of each term's block in theta
  int<lower=0> Q2;                          // random-effect columns of terms 2..n_terms
  int<lower=1> M;                           // Q2 + P + 1

  // first term: Z1j'Z1j per level
  array[l_term[1]] matrix[p_term[1], p_term[1]] C1;
  // lower triangle of Zh'Zh, Zh = [Z2, X, y], as CSR (M x M)
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

  int<lower=0, upper=1> REML;               // 0: ML deviance, 1: REML criterion
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
  {
    int q2 = 0;
    int nth = 0;
    for (k in 1:n_terms) {
      if (theta_start[k] != nth + 1) {
        reject("theta_start[", k, "] = ", theta_start[k], ", expected ", nth + 1);
      }
      nth += (p_term[k] * (p_term[k] + 1)) %/% 2;
      if (k > 1) {
        q2 += p_term[k] * l_term[k];
      }
    }
    if (nth != n_theta) reject("n_theta = ", n_theta, ", the terms need ", nth);
    if (q2 != Q2) reject("Q2 = ", Q2, ", the terms need ", q2);
    if (M != Q2 + P + 1) reject("M = ", M, ", expected Q2 + P + 1 = ", Q2 + P + 1);
    if (REML && N <= P) reject("REML needs N > P");
  }
}
parameters {
  vector[n_theta] theta;
}
model {
  tuple(real, matrix[P + 1, P + 1]) reduced
      = lmm_reduce(theta, P, Q2, p_term, l_term, theta_start, C1, ZhZh_low, K_w, K_v, K_u,
                   B_w, B_v, B_u, diag_q2, zd, zb);
  target += -0.5 * lmm_profiled_deviance(reduced.1, reduced.2, N, REML);
}
