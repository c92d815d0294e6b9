// Generic maximum likelihood fit of a generalized linear mixed model by the Laplace
// approximation (lme4's glmer, nAGQ = 1; glmer.nb for the negative binomial). Family, link and
// the random-effects structure arrive as data, so one compiled program serves every glmer
// formula. See glmm_functions.stan for the approximation.
//
// Parameters: beta, theta (relative covariance factors in lme4's order, unconstrained: the
// likelihood is unchanged when a column of T_k changes sign) and, for the negative binomial,
// log(phi) (glmer.nb's theta = phi). The Gamma dispersion is lme4's dev / N, not a parameter. Optimise with jacobian = false: target = lme4's logLik.
// Start like lme4: theta = identity (theta = 0 is a stationary point), beta from a GLM fit.
// Data and inits: bayesmix.glmer.glmer_data / glmer_inits.
functions {
#include glmm_functions.stan
}
data {
  int<lower=1> N;                           // observations
  int<lower=0> P;                           // fixed-effect columns
  int<lower=1> n_terms;                     // random-effect terms, lme4's order
  array[n_terms] int<lower=1> p_term;       // coefficients per term
  array[n_terms] int<lower=1> l_term;       // levels per term
  int<lower=1> n_theta;                     // sum of p_k (p_k + 1) / 2
  int<lower=1> Q;                           // sum of p_k l_k
  int<lower=1> R;                           // sum of p_k: non-zeros per row of Z
  matrix[N, P] X;
  vector[N] offs;                           // offset
  matrix[N, R] Zr;                          // the terms' covariates, term by term
  array[N, n_terms] int<lower=1> level;     // level of each row in each term (1-based)
  int<lower=1, upper=4> family;             // 1 binomial/bernoulli, 2 poisson, 3 negbinomial, 4 Gamma
  int<lower=1, upper=7> link;               // 1 logit, 2 probit, 3 cloglog, 4 log, 5 identity,
                                            // 6 inverse, 7 sqrt
  vector[N] y;                              // response (successes for binomial)
  vector<lower=0>[N] trials;                // binomial trials (1 for bernoulli, else unused)
  int<lower=1> max_newton;                  // Newton steps for the conditional mode (e.g. 50)
  real<lower=0> newton_tol;                 // relative step size that ends them (e.g. 1e-6)
  vector[Q] u_start;                        // where they start: the mode at the inits

  // the sparse structure of H = Lambda'Z'WZ Lambda + I (bayesmix.lmm.sparsity)
  int<lower=1> n_slot;                      // q1 p1 + n_cell p1 + n_h22 Hessian values
  int<lower=0> n_cell;                      // non-zero cells of the block H21
  int<lower=0> n_h22;                       // non-zeros of H22's lower triangle
  vector[n_slot] hs_base;                   // the identity, in the slots' layout
  array[N * ((R * (R + 1)) %/% 2)] int<lower=1> hs_v;  // pair terms -> slots (CSR)
  array[n_slot + 1] int<lower=1> hs_u;
  array[N * R] int<lower=1> gr_v;           // row-wise non-zeros -> columns of Z (CSR)
  array[Q + 1] int<lower=1> gr_u;
  array[n_cell] int<lower=1> cell_row;      // row of H21 (1..Q - q1)
  array[n_cell] int<lower=1> cell_lev;      // level of term 1; cells sorted by level, row
  array[l_term[1] + 1] int<lower=1> lev_u;  // first cell of each level (CSR row starts)
  array[n_h22] int<lower=1> h22_row;        // H22's non-zeros (lower triangle): row, column
  array[n_h22] int<lower=1> h22_col;        // (1..Q - q1, row >= column)
}
transformed data {
  int has_phi = family == 3;
  // col[r, i]: the column of Z Lambda holding the r-th non-zero of row i
  array[R, N] int col;
  real lp_const = glmm_lp_const(family, y, trials);
  int q1 = p_term[1] * l_term[1];
  vector[N * R] gr_w = rep_vector(1, N * R);
  if (n_slot != (q1 + n_cell) * p_term[1] + n_h22) {
    reject("n_slot = ", n_slot, ", the terms and cells need ", (q1 + n_cell) * p_term[1] + n_h22);
  }
  {
    int r = 0;
    int q0 = 0;
    for (k in 1:n_terms) {
      for (c in 1:p_term[k]) {
        r += 1;
        for (i in 1:N) {
          if (level[i, k] > l_term[k]) reject("level[", i, ", ", k, "] = ", level[i, k],
                                               " exceeds l_term[", k, "] = ", l_term[k]);
          col[r, i] = q0 + (level[i, k] - 1) * p_term[k] + c;
        }
      }
      q0 += p_term[k] * l_term[k];
    }
    if (r != R) reject("R = ", R, ", the terms need ", r);
    if (q0 != Q) reject("Q = ", Q, ", the terms need ", q0);
    int nth = 0;
    for (k in 1:n_terms) nth += (p_term[k] * (p_term[k] + 1)) %/% 2;
    if (nth != n_theta) reject("n_theta = ", n_theta, ", the terms need ", nth);
    if (family == 1 && link > 4) {
      reject("link code ", link, " is not available for the binomial family; valid: 1 logit, ",
             "2 probit, 3 cloglog, 4 log");
    }
    if ((family == 2 || family == 3) && link != 4 && link != 5 && link != 7) {
      reject("link code ", link, " is not available for the poisson / negative binomial ",
             "family; valid: 4 log, 5 identity, 7 sqrt");
    }
    if (family == 4 && link != 4 && link != 5 && link != 6) {
      reject("link code ", link, " is not available for the Gamma family; valid: 4 log, ",
             "5 identity, 6 inverse");
    }
  }
}
parameters {
  vector[P] beta;
  vector[n_theta] theta;
  vector[has_phi] log_phi;
}
model {
  real phi = has_phi ? exp(log_phi[1]) : 1.0;
  tuple(real, vector[Q]) lap = glmm_laplace(X * beta + offs, glmm_zlambda(theta, Zr, p_term), col,
                                         Q, q1, p_term[1], family, link, y, trials, phi,
                                         max_newton, newton_tol, u_start, hs_base, hs_v,
                                         hs_u, gr_w, gr_v, gr_u, cell_row, cell_lev, lev_u,
                                         h22_row, h22_col);
  target += lap.1 + lp_const;
}
