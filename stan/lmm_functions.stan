// Linear mixed models: the profiled likelihood of Bates, Maechler, Bolker and Walker (2015,
// J. Stat. Softw. 67(1), section 3), computed from sufficient statistics by block elimination of
// the first random-effect term (the one with most levels), as in MixedModels.jl.
//
// Model: y | u ~ N(X beta + Z Lambda u, sigma^2 I), u ~ N(0, sigma^2 I_q).
// Lambda is block diagonal: for term k the lower-triangular p_k x p_k factor T_k is repeated for
// each of its l_k levels; theta stacks the lower triangles of the T_k column-major (lme4's order).
// A = Lambda' Z'Z Lambda + I_q.
//
// Notation of the data (built by bayesmix.lmm.lmm_stan_data):
//   Z1 = columns of term 1 (level-major), Z2 = columns of terms 2..K (Q2 of them),
//   Zh = [Z2, X, y] (M = Q2 + P + 1 columns; y centred when X spans the constant),
//   C1[j] = Z1j' Z1j (p1 x p1), B_j = Z1j' Zh,
//   Q = sum_j B_j' W_j B_j with W_j = T1 (T1' C_j T1 + I)^-1 T1', w stacking vec(W_j)
//   (column-major, level by level). The dense path takes B itself, level by level (B_v: the
//   union of each level's non-zero columns, B_u: each level's first, B_w: each column's p1
//   values) and forms Q in C++; the diagonal path (diag_q2) takes the fixed sparse matrix K
//   with vec(Q) = K w, holding only the rows of Q it needs (K_w, K_v, K_u).
//
// Then S = D' (Zh'Zh - Q) D + diag(I_Q2, 0), D = diag(Lambda2, I_{P+1}), is the Schur complement
// of the first term's block in the full penalized system; its lower Cholesky factor L gives
//   log|A|      = sum_j log|A_j| + 2 sum(log(diag(L)[1:Q2]))
//   log|R_X|^2  = 2 sum(log(diag(L)[Q2+1:Q2+P]))
//   r2          = L[M, M]^2      (penalized residual sum of squares at the optimum)
// and its trailing (P+1) x (P+1) block R satisfies
//   R R' = [X, y]' (I - Z Lambda A^-1 Lambda' Z') [X, y],
// so that for any beta, with v = [-beta; 1],
//   ||R' v||^2 = min_u ||y - X beta - Z Lambda u||^2 + ||u||^2.

/**
 * Relative covariance factor of one term: the p x p lower-triangular matrix whose lower triangle,
 * read column-major, is theta[start : start + p (p + 1) / 2 - 1].
 */
matrix lmm_theta_factor(vector theta, int start, int p) {
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
 * Block-by-block elimination of the first term.
 * Returns (sum_j log|A_j|, w) with A_j = T1' C_j T1 + I and w stacking vec(W_j),
 * W_j = T1 A_j^-1 T1' (l1 * p1 * p1 entries, level-major, each W_j column-major).
 */
tuple(real, vector) lmm_first_term(vector theta, int start, int p1, data array[] matrix C1) {
  int l1 = size(C1);
  matrix[p1, p1] T1 = lmm_theta_factor(theta, start, p1);
  vector[l1 * p1 * p1] w;
  real logdet;
  if (p1 == 1) {
    // scalar intercept-only term: A_j = t^2 c_j + 1, W_j = t^2 / A_j
    vector[l1] c;
    real t2 = square(T1[1, 1]);
    for (j in 1:l1) {
      c[j] = C1[j, 1, 1];
    }
    vector[l1] a = 1 + t2 * c;
    w = t2 ./ a;
    logdet = sum(log(a));
  } else {
    // Per level: A_j = T1' C_j T1 + I, its lower Cholesky factor L_j, V = L_j^-1 T1' and
    // W_j = V' V, written as scalar loops. p1 is small, and scalar code compiles far faster
    // than the reverse-mode specialisations of the matrix functions (docs/architecture.md).
    int pp = p1 * p1;
    logdet = 0;
    for (j in 1:l1) {
      matrix[p1, p1] Lj = rep_matrix(0, p1, p1);
      matrix[p1, p1] V;
      for (b in 1:p1) {
        for (a in b:p1) {
          // A_j[a, b] minus what the columns of L_j before b already account for
          real s = (a == b);
          for (k in a:p1) {
            for (m in b:p1) {
              s += T1[k, a] * C1[j, k, m] * T1[m, b];
            }
          }
          for (k in 1:(b - 1)) {
            s -= Lj[a, k] * Lj[b, k];
          }
          Lj[a, b] = a == b ? sqrt(s) : s / Lj[b, b];
        }
      }
      for (c in 1:p1) {
        for (a in 1:p1) {
          real s = T1[c, a];
          for (k in 1:(a - 1)) {
            s -= Lj[a, k] * V[k, c];
          }
          V[a, c] = s / Lj[a, a];
        }
      }
      for (b in 1:p1) {
        for (a in 1:p1) {
          real s = 0;
          for (k in 1:p1) {
            s += V[k, a] * V[k, b];
          }
          w[(j - 1) * pp + (b - 1) * p1 + a] = s;
        }
        logdet += 2 * log(Lj[b, b]);
      }
    }
  }
  return (logdet, w);
}

/**
 * [log|S_QQ|; vec(R)] for S = D' (Zh'Zh - Q) D + E with Q = sum_j B_j' W_j B_j (see lmm_reduce),
 * L = cholesky_decompose(S), log|S_QQ| = 2 sum(log(diagonal(L)[1:Q2])),
 * R = L[(Q2 + 1):M, (Q2 + 1):M] column-major. C++ (lmm_reduce.hpp; stanc --allow-undefined):
 * S is formed on values and its gradient supplied by hand.
 */
vector lmm_dense_factor(vector theta, vector w, int P, int Q2, array[] int p_term,
                        array[] int l_term, array[] int theta_start, data matrix ZhZh_low,
                        data vector B_w, data array[] int B_v, data array[] int B_u);

/**
 * The reduced system of a linear mixed model at theta.
 *
 * @param theta         relative covariance parameters, lme4's order (unconstrained)
 * @param P             number of fixed-effect columns
 * @param Q2            number of random-effect columns of terms 2..K
 * @param p_term        coefficients per term; l_term: levels per term
 * @param theta_start   1-based position of each term's block in theta
 * @param C1            Z1j'Z1j for the levels of term 1
 * @param ZhZh_low      lower triangle of Zh'Zh (M x M, upper triangle zero)
 * @param K_w, K_v, K_u with diag_q2: CSR arrays of the compact K (k_rows x l1*p1*p1)
 * @param B_w, B_v, B_u without diag_q2: B = Z1'Zh level by level (see the top of this file)
 * @param diag_q2       1: the block of terms 2..K is diagonal (bayesmix.lmm.q2_is_diagonal)
 * @param zd, zb        with diag_q2: Zh'Zh's first Q2 diagonal entries and its trailing P + 1
 *                      rows (lower triangle; ZhZh_low is then empty)
 * @return (log|A|, R) with R the trailing (P+1) x (P+1) block of the lower Cholesky factor of S:
 *         R = [[R_X', 0], [c_beta', sqrt(r2)]].
 */
tuple(real, matrix) lmm_reduce(vector theta, int P, int Q2, array[] int p_term,
                               array[] int l_term, array[] int theta_start,
                               data array[] matrix C1, data matrix ZhZh_low,
                               data vector K_w, data array[] int K_v, data array[] int K_u,
                               data vector B_w, data array[] int B_v, data array[] int B_u,
                               int diag_q2, data vector zd, data matrix zb) {
  int M = Q2 + P + 1;
  int n_terms = size(p_term);
  int p1 = p_term[1];
  int n_w = l_term[1] * p1 * p1;
  tuple(real, vector[n_w]) first = lmm_first_term(theta, theta_start[1], p1, C1);

  if (diag_q2) {
    // the other terms' block of S is diagonal (scalar terms, e.g. (1 | a/b)): eliminate its
    // columns one by one and factorise only the (P + 1) x (P + 1) trailing block. K's rows:
    // Q's q2 diagonal entries, then its trailing P + 1 rows, row by row (k_rows).
    vector[size(K_u) - 1] kw = csr_matrix_times_vector(size(K_u) - 1, n_w, K_w, K_v, K_u,
                                                        first.2);
    vector[Q2] sq;
    int pos = 0;
    for (k in 2:n_terms) {
      sq[(pos + 1):(pos + l_term[k])] = rep_vector(theta[theta_start[k]], l_term[k]);
      pos += l_term[k];
    }
    vector[Q2] d = square(sq) .* (zd - kw[1:Q2]) + 1;
    matrix[P + 1, M] B = zb - to_matrix(kw[(Q2 + 1):rows(kw)], M, P + 1)';
    matrix[P + 1, Q2] Lxq = diag_post_multiply(B[ : , 1:Q2], sq ./ sqrt(d));
    matrix[P + 1, P + 1] R = cholesky_decompose(
        symmetrize_from_lower_tri(B[ : , (Q2 + 1):M]) - tcrossprod(Lxq));
    return (first.1 + sum(log(d)), R);
  }

  // S = D' (Zh'Zh - Q) D + E and its factor, in C++ (lmm_reduce.hpp): off the autodiff tape
  // but for S and L as whole matrices
  vector[1 + (P + 1) * (P + 1)] f = lmm_dense_factor(theta, first.2, P, Q2, p_term, l_term,
                                                     theta_start, ZhZh_low, B_w, B_v, B_u);
  return (first.1 + f[1], to_matrix(f[2:], P + 1, P + 1));
}

/**
 * Profiled deviance from the reduced system: ML (REML = 0)
 *   log|A| + N (1 + log(2 pi r2 / N)),
 * or the REML criterion (REML = 1)
 *   log|A| + log|R_X|^2 + (N - P)(1 + log(2 pi r2 / (N - P))).
 * -deviance / 2 is lme4's logLik (for REML fits -REMLcrit / 2).
 */
real lmm_profiled_deviance(real logdet_A, matrix R, int N, int REML) {
  int P = rows(R) - 1;
  real r2 = square(R[P + 1, P + 1]);
  if (REML) {
    int nmp = N - P;
    return logdet_A + 2 * sum(log(head(diagonal(R), P)))
           + nmp * (1 + log(2 * pi() * r2 / nmp));
  }
  return logdet_A + N * (1 + log(2 * pi() * r2 / N));
}

/**
 * Penalized residual sum of squares at beta, with the random effects integrated out:
 *   ||R' [-beta; 1]||^2 = (y - X beta)' (I + Z Lambda Lambda' Z')^-1 (y - X beta).
 * beta is on the response scale of the data (centred y: shift the coefficient that spans the
 * constant by the response mean).
 */
real lmm_penalized_rss(matrix R, vector beta) {
  return dot_self(R' * append_row(-beta, 1));
}

/**
 * Marginal log likelihood of a linear mixed model, y ~ N(X beta, sigma^2 (I + Z Lambda Lambda' Z')),
 * from the reduced system: -(N log(2 pi sigma^2) + log|A| + prss(beta) / sigma^2) / 2.
 */
real lmm_marginal_loglik(real logdet_A, matrix R, vector beta, real sigma, int N) {
  return -0.5 * (N * log(2 * pi() * square(sigma)) + logdet_A
                 + lmm_penalized_rss(R, beta) / square(sigma));
}
