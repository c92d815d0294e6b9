// Distributional models (issue #17) by Laplace maximum likelihood, glmmTMB's estimator
// (ordinal::clmm's for cumulative models): one generic program, family, links and every
// predictor's fixed and group-level terms arrive as data (the common data of the
// distributional programs, bayesmix.design.dist.dist_stan_data, plus Q and Newton's controls).
// See dist_laplace.stan for the approximation.
//
// Parameters: beta (every predictor's fixed effects, blocks side by side in predictor order,
// each on its link scale); theta, each group-level term's lower Cholesky factor T_k of its
// covariance (b_j = T_k u_j, u ~ N(0, I)), column-major lower triangle (lme4's order; only
// the diagonal for an uncorrelated term), unconstrained: the likelihood is unchanged when a
// column of T_k changes sign; cutpoints (cumulative: K - 1, ordered). Optimise with
// jacobian = false: the optimum is the ML estimate and lp__ the Laplace logLik.
// Data and inits: bayesmix.dist.ml.dist_ml_data / fit_dist_ml.
functions {
#include dist_functions.stan
#include dist_laplace.stan
}
data {
  int<lower=1> N;
  int<lower=1, upper=12> family;
  int<lower=1> D;                           // linear predictors (1 mu, 2.. the dpars)
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
  // this program's own
  int<lower=0> Q;                           // random effects: sum of p_term * l_term
  int<lower=1> max_newton;                  // Newton steps per evaluation, at most
  real<lower=0> newton_tol;                 // relative step that ends them
  vector[Q] u_start;                        // where they start (the mode at the inits)
}
transformed data {
  int nc = n_cat > 0 ? n_cat - 1 : 0;
  int n_theta = 0;
  array[R, N] int col;                      // column of u of each row's r-th non-zero
  array[R] int rlp;                         // predictor of the r-th non-zero
  array[D] int has_re = rep_array(0, D);
  // H is block diagonal when every term has the first one's grouping factor (dml_solve):
  // the levels' CSR aggregation of rows and u's index of (column of Z, level)
  int nl = n_terms > 0 ? l_term[1] : 0;
  int blocked = n_terms > 0;
  array[R, nl] int bidx;
  vector[N] agg_w = rep_vector(1, N);
  array[N] int agg_v = n_terms > 0 ? sort_indices_asc(J[1]) : linspaced_int_array(N, 1, N);
  array[nl + 1] int agg_u;
  {
    int r = 0;
    int q0 = 0;
    for (k in 1:n_terms) {
      n_theta += cor_term[k] ? (p_term[k] * (p_term[k] + 1)) %/% 2 : p_term[k];
      has_re[lp_term[k]] = 1;
      for (c in 1:p_term[k]) {
        r += 1;
        rlp[r] = lp_term[k];
        for (i in 1:N) {
          if (J[k, i] > l_term[k]) reject("J[", k, ", ", i, "] = ", J[k, i], " exceeds l_term");
          col[r, i] = q0 + (J[k, i] - 1) * p_term[k] + c;
        }
      }
      q0 += p_term[k] * l_term[k];
    }
    if (r != R) reject("R = ", R, ", the terms need ", r);
    if (q0 != Q) reject("Q = ", Q, ", the terms need ", q0);
    for (k in 2:n_terms) {
      if (l_term[k] != nl) blocked = 0;
      for (i in 1:N) if (J[k, i] != J[1, i]) blocked = 0;
    }
    if (blocked) {
      array[nl] int count = rep_array(0, nl);
      for (i in 1:N) count[J[1, i]] += 1;
      agg_u[1] = 1;
      for (j in 1:nl) agg_u[j + 1] = agg_u[j] + count[j];
      r = 0;
      q0 = 0;
      for (k in 1:n_terms) {
        for (c in 1:p_term[k]) {
          r += 1;
          for (j in 1:nl) bidx[r, j] = q0 + (j - 1) * p_term[k] + c;
        }
        q0 += p_term[k] * l_term[k];
      }
    }
    if (sum(K_lp) != K_all) reject("K_all = ", K_all, ", K_lp sums to ", sum(K_lp));
    if (family == 6 && (n_cat < 2 || D != 1)) reject("cumulative: n_cat >= 2 and D = 1 needed");
    if (family == 6) {
      for (i in 1:N) if (Yi[i] < 1 || Yi[i] > n_cat) reject("Yi[", i, "] outside 1..n_cat");
    }
  }
}
parameters {
  vector[K_all] beta;
  vector[n_theta] theta;
  ordered[nc] cutpoints;
}
model {
  matrix[N, D] eta0 = rep_matrix(0, N, D);
  matrix[N, R] zl;
  {
    int pos = 0;
    for (d in 1:D) {
      if (K_lp[d] > 0) {
        eta0[ : , d] = X[ : , (pos + 1):(pos + K_lp[d])] * beta[(pos + 1):(pos + K_lp[d])];
      }
      pos += K_lp[d];
    }
    if (has_offset) eta0[ : , 1] += offsets;
    int c = 1;
    int t = 1;
    for (k in 1:n_terms) {
      int p = p_term[k];
      matrix[p, p] T;
      if (cor_term[k]) {
        T = dml_factor(theta, t, p);
        t += (p * (p + 1)) %/% 2;
      } else {
        T = diag_matrix(theta[t:(t + p - 1)]);
        t += p;
      }
      zl[ : , c:(c + p - 1)] = Z[ : , c:(c + p - 1)] * T;
      c += p;
    }
  }
  target += dml_laplace(eta0, zl, col, rlp, has_re, Q, family, dlink, Y, Yi, trials,
                        cutpoints, max_newton, newton_tol, u_start, blocked, bidx, agg_w,
                        agg_v, agg_u).1;
}
