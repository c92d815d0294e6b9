// generated with brms 2.18.0
functions {
  /* hurdle negative binomial log-PDF of a single response
   * Args:
   *   y: the response value
   *   mu: mean parameter of negative binomial distribution
   *   phi: shape parameter of negative binomial distribution
   *   hu: hurdle probability
   * Returns:
   *   a scalar to be added to the log posterior
   */
  real hurdle_neg_binomial_lpmf(int y, real mu, real phi, real hu) {
    if (y == 0) {
      return bernoulli_lpmf(1 | hu);
    } else {
      return bernoulli_lpmf(0 | hu) +
             neg_binomial_2_lpmf(y | mu, phi) -
             log1m((phi / (mu + phi))^phi);
    }
  }
  /* hurdle negative binomial log-PDF of a single response
   * logit parameterization for the hurdle part
   * Args:
   *   y: the response value
   *   mu: mean parameter of negative binomial distribution
   *   phi: phi parameter of negative binomial distribution
   *   hu: linear predictor of hurdle part
   * Returns:
   *   a scalar to be added to the log posterior
   */
  real hurdle_neg_binomial_logit_lpmf(int y, real mu, real phi, real hu) {
   if (y == 0) {
     return bernoulli_logit_lpmf(1 | hu);
   } else {
     return bernoulli_logit_lpmf(0 | hu) +
            neg_binomial_2_lpmf(y | mu, phi) -
            log1m((phi / (mu + phi))^phi);
   }
  }
  /* hurdle negative binomial log-PDF of a single response
   * log parameterization for the negative binomial part
   * Args:
   *   y: the response value
   *   eta: linear predictor for negative binomial distribution
   *   phi phi parameter of negative binomial distribution
   *   hu: hurdle probability
   * Returns:
   *   a scalar to be added to the log posterior
   */
  real hurdle_neg_binomial_log_lpmf(int y, real eta, real phi, real hu) {
    if (y == 0) {
      return bernoulli_lpmf(1 | hu);
    } else {
      return bernoulli_lpmf(0 | hu) +
             neg_binomial_2_log_lpmf(y | eta, phi) -
             log1m((phi / (exp(eta) + phi))^phi);
    }
  }
  /* hurdle negative binomial log-PDF of a single response
   * log parameterization for the negative binomial part
   * logit parameterization for the hurdle part
   * Args:
   *   y: the response value
   *   eta: linear predictor for negative binomial distribution
   *   phi: phi parameter of negative binomial distribution
   *   hu: linear predictor of hurdle part
   * Returns:
   *   a scalar to be added to the log posterior
   */
  real hurdle_neg_binomial_log_logit_lpmf(int y, real eta, real phi, real hu) {
    if (y == 0) {
      return bernoulli_logit_lpmf(1 | hu);
   } else {
      return bernoulli_logit_lpmf(0 | hu) +
             neg_binomial_2_log_lpmf(y | eta, phi) -
             log1m((phi / (exp(eta) + phi))^phi);
    }
  }
  // hurdle negative binomial log-CCDF and log-CDF functions
  real hurdle_neg_binomial_lccdf(int y, real mu, real phi, real hu) {
    return bernoulli_lpmf(0 | hu) + neg_binomial_2_lccdf(y | mu, phi) -
           log1m((phi / (mu + phi))^phi);
  }
  real hurdle_neg_binomial_lcdf(int y, real mu, real phi, real hu) {
    return log1m_exp(hurdle_neg_binomial_lccdf(y | mu, phi, hu));
  }
}
data {
  int<lower=1> N;  // total number of observations
  int Y[N];  // response variable
  int<lower=1> K;  // number of population-level effects
  matrix[N, K] X;  // population-level design matrix
  // data for group-level effects of ID 1
  int<lower=1> N_1;  // number of grouping levels
  int<lower=1> M_1;  // number of coefficients per level
  int<lower=1> J_1[N];  // grouping indicator per observation
  // group-level predictor values
  vector[N] Z_1_1;
  int prior_only;  // should the likelihood be ignored?
}
transformed data {
  int Kc = K - 1;
  matrix[N, Kc] Xc;  // centered version of X without an intercept
  vector[Kc] means_X;  // column means of X before centering
  for (i in 2:K) {
    means_X[i - 1] = mean(X[, i]);
    Xc[, i - 1] = X[, i] - means_X[i - 1];
  }
}
parameters {
  vector[Kc] b;  // population-level effects
  real Intercept;  // temporary intercept for centered predictors
  real<lower=0> shape;  // shape parameter
  real Intercept_hu;  // temporary intercept for centered predictors
  vector<lower=0>[M_1] sd_1;  // group-level standard deviations
  vector[N_1] z_1[M_1];  // standardized group-level effects
}
transformed parameters {
  vector[N_1] r_1_1;  // actual group-level effects
  real lprior = 0;  // prior contributions to the log posterior
  r_1_1 = (sd_1[1] * (z_1[1]));
  lprior += student_t_lpdf(Intercept | 3, 0, 2.9);
  lprior += gamma_lpdf(shape | 0.01, 0.01);
  lprior += logistic_lpdf(Intercept_hu | 0, 1);
  lprior += student_t_lpdf(sd_1 | 3, 0, 2.9)
    - 1 * student_t_lccdf(0 | 3, 0, 2.9);
}
model {
  // likelihood including constants
  if (!prior_only) {
    // initialize linear predictor term
    vector[N] mu = rep_vector(0.0, N);
    // initialize linear predictor term
    vector[N] hu = rep_vector(0.0, N);
    mu += Intercept + Xc * b;
    hu += Intercept_hu;
    for (n in 1:N) {
      // add more terms to the linear predictor
      mu[n] += r_1_1[J_1[n]] * Z_1_1[n];
    }
    for (n in 1:N) {
      target += hurdle_neg_binomial_log_logit_lpmf(Y[n] | mu[n], shape, hu[n]);
    }
  }
  // priors including constants
  target += lprior;
  target += std_normal_lpdf(z_1[1]);
}
generated quantities {
  // actual population-level intercept
  real b_Intercept = Intercept - dot_product(means_X, b);
  // actual population-level intercept
  real b_hu_Intercept = Intercept_hu;
}

