// Priors given by codes (bayesmix.priors.PRIOR_CODES) and Stan's cholesky_factor_corr
// transform with its Jacobian: shared by the joint programs glmm_joint.stan and dist_nuts.stan.
/**
 * Log density (up to constants under ~ / _lupdf) of one scalar prior given by a code.
 */
real joint_prior_lpdf(real x, int dist, vector a) {
  if (dist == 0) return 0;
  if (dist == 1) return normal_lupdf(x | a[1], a[2]);
  if (dist == 2) return student_t_lupdf(x | a[1], a[2], a[3]);
  if (dist == 3) return cauchy_lupdf(x | a[1], a[2]);
  if (dist == 4) return double_exponential_lupdf(x | a[1], a[2]);
  if (dist == 5) return logistic_lupdf(x | a[1], a[2]);
  if (dist == 6) return std_normal_lupdf(x);
  if (dist == 7) return exponential_lupdf(x | a[1]);
  if (dist == 8) return gamma_lupdf(x | a[1], a[2]);
  if (dist == 9) return inv_gamma_lupdf(x | a[1], a[2]);
  if (dist == 10) return lognormal_lupdf(x | a[1], a[2]);
  if (dist == 11) return weibull_lupdf(x | a[1], a[2]);
  reject("unknown prior code ", dist);
}

/**
 * Stan's cholesky_factor_corr transform of K (K - 1) / 2 unconstrained values (tanh to
 * canonical partial correlations, then the row-wise construction).
 */
matrix joint_cholesky_corr(vector y, int K) {
  matrix[K, K] L = rep_matrix(0, K, K);
  vector[rows(y)] z = tanh(y);
  int pos = 1;
  L[1, 1] = 1;
  for (i in 2:K) {
    L[i, 1] = z[pos];
    pos += 1;
    real ss = square(L[i, 1]);
    for (j in 2:(i - 1)) {
      L[i, j] = z[pos] * sqrt(1 - ss);
      pos += 1;
      ss += square(L[i, j]);
    }
    L[i, i] = sqrt(1 - ss);
  }
  return L;
}

/**
 * The log absolute Jacobian determinant of joint_cholesky_corr (as Stan adds it).
 */
real joint_cholesky_corr_jacobian(vector y, int K) {
  vector[rows(y)] z = tanh(y);
  real lj = sum(log1m(square(z)));
  int pos = 1;
  for (i in 2:K) {
    real ss = square(z[pos]);
    pos += 1;
    for (j in 2:(i - 1)) {
      lj += 0.5 * log1m(ss);
      ss += square(z[pos] * sqrt(1 - ss));
      pos += 1;
    }
  }
  return lj;
}
