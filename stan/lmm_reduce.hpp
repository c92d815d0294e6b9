// The dense reduced system of a linear mixed model (lmm_functions.stan, lmm_reduce), in plain
// double arithmetic with its gradient supplied by hand.
//
// lmm_functions.stan declares `lmm_dense_factor` without a body (stanc --allow-undefined); this
// header defines it (bayesmix's engine compiles it in; CmdStan takes it as USER_HEADER). Built
// from Stan's elementwise operations, S = D'(Zh'Zh - Q(w)) D + E put several autodiff nodes on
// the tape for each of its M^2 entries: for InstEval (M = 1159) that was about half the time of
// every gradient and most of the program's memory. Here S is formed on values, factored once,
// and the only taped objects are whole matrices: S and its factor L as two `var` matrices, and
// Stan's own blocked reverse-mode Cholesky carries L's adjoint back to S. One callback then
// takes S's adjoint to w (the first term's weights) and to the factors of terms 2..K.
//
// Notation as in lmm_functions.stan: Q = sum_j B_j' W_j B_j (B = Z1'Zh, level by level); D =
// diag(Lambda2, I_{P+1}); E = I on the first Q2 rows. With G the symmetric adjoint of S:
//   dS = dD' S0 D + D' S0 dD - D' dQ D,  so
//   adjoint of D  = 2 S0 D G  (read on D's block diagonal: the entries of each T_k),
//   adjoint of Q  = -D G D'   (off-diagonal entries of its lower triangle counted twice),
// and w's adjoint from Q's through the same level blocks B_j' W_j B_j.
#ifndef BAYESMIX_LMM_REDUCE_HPP
#define BAYESMIX_LMM_REDUCE_HPP

#include <stan/math.hpp>
#include <Eigen/Dense>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace bayesmix_lmm {

using Vec = Eigen::VectorXd;
using Mat = Eigen::MatrixXd;
using Ints = std::vector<int>;

[[noreturn]] inline void fail(const std::string& what) {
  throw std::domain_error("lmm_dense_factor: " + what);
}

// B = Z1'Zh level by level (1-based data): level j's columns are v[u[j] - 1 .. u[j + 1] - 2]
// (the union of its p1 rows' non-zeros, increasing), and w holds each column's p1 values
struct Blocks {
  const double* w;
  const Ints &v, &u;
  int l1, p1;
};

// Sizes and every index within range before any loop uses them (the data may come from an
// edited bundle; the loops below do not check).
inline void check(int P, int Q2, const Ints& p, const Ints& l, const Ints& start,
                  Eigen::Index n_theta, Eigen::Index n_w, Eigen::Index z_rows,
                  Eigen::Index z_cols, Eigen::Index b_w, const Ints& bv, const Ints& bu) {
  const long M = static_cast<long>(Q2) + P + 1;
  if (P < 0 || Q2 < 0 || p.empty() || p.size() != l.size() || p.size() != start.size())
    fail("inconsistent term sizes");
  long q2 = 0;
  for (size_t k = 0; k < p.size(); ++k) {
    if (p[k] < 1 || l[k] < 1 || start[k] < 1
        || start[k] - 1 + static_cast<long>(p[k]) * (p[k] + 1) / 2 > n_theta)
      fail("term " + std::to_string(k + 1) + " does not fit theta");
    if (k > 0) q2 += static_cast<long>(p[k]) * l[k];
  }
  if (q2 != Q2) fail("Q2 does not match the terms");
  if (z_rows != M || z_cols != M) fail("Zh'Zh is not M x M");
  if (n_w != static_cast<long>(l[0]) * p[0] * p[0]) fail("w does not match the first term");
  const long nz = static_cast<long>(bv.size());
  if (static_cast<long>(bu.size()) != l[0] + 1 || bu.front() != 1 || bu.back() != nz + 1
      || b_w != nz * p[0])
    fail("bad level layout of B");
  for (size_t j = 1; j < bu.size(); ++j) {
    if (bu[j] < bu[j - 1]) fail("B's level starts decrease");
    for (int e = bu[j - 1]; e < bu[j]; ++e)  // 1-based entries of level j - 1
      if (bv[e - 1] < 1 || bv[e - 1] > M || (e > bu[j - 1] && bv[e - 1] <= bv[e - 2]))
        fail("B's columns out of range or not increasing within a level");
  }
}

// B's entries column by column, the order in which the products below visit Q's columns:
// column c's entries are entry[at[c] .. at[c + 1] - 1] (0-based into v and, times p1, into w;
// increasing), and end[k] is one past the last entry of entry[k]'s level. Columns increase
// within a level (check), so entries entry[k] .. end[k] - 1 are the level's columns >= c, its
// part of Q's lower triangle. A counting sort, O(entries), redone at each call: cheap beside
// the products, and the function stays stateless.
struct Columns {
  Ints at, entry, end;
};

inline Columns by_column(const Blocks& B, Eigen::Index M) {
  const size_t nz = B.v.size();
  Columns C{Ints(M + 1, 0), Ints(nz), Ints(nz)};
  for (size_t e = 0; e < nz; ++e) ++C.at[B.v[e]];  // v is 1-based: counts land a column ahead
  for (Eigen::Index c = 0; c < M; ++c) C.at[c + 1] += C.at[c];
  Ints next(C.at.begin(), C.at.end() - 1);
  for (int j = 0; j < B.l1; ++j)
    for (int e = B.u[j] - 1; e < B.u[j + 1] - 1; ++e) {
      const int k = next[B.v[e] - 1]++;
      C.entry[k] = e;
      C.end[k] = B.u[j + 1] - 1;
    }
  return C;
}

// Asks for the memory visit k of `C` will read (B's values and columns of entry[k] .. end[k] - 1,
// and column entry[k] of `X`, U or T below) a few visits ahead: the visits jump around B, so the
// hardware cannot guess the next one, and waiting on each read was most of their time.
constexpr int kAhead = 8;

inline void prefetch_visit(const Blocks& B, const Columns& C, int k, const double* X) {
#if defined(__GNUC__)
  const int e = C.entry[k], p1 = B.p1;
  const char* last = reinterpret_cast<const char*>(B.w + static_cast<Eigen::Index>(C.end[k]) * p1);
  for (const char* q = reinterpret_cast<const char*>(B.w + static_cast<Eigen::Index>(e) * p1);
       q < last; q += 64)
    __builtin_prefetch(q);
  __builtin_prefetch(B.v.data() + e);
  __builtin_prefetch(X + static_cast<Eigen::Index>(e) * p1);
#endif
}

// The lower-triangular p x p factor whose lower triangle, column-major, starts at theta[start]
inline Mat theta_factor(const Vec& theta, int start, int p) {
  Mat T = Mat::Zero(p, p);
  int pos = start - 1;
  for (int j = 0; j < p; ++j)
    for (int i = j; i < p; ++i) T(i, j) = theta[pos++];
  return T;
}

// D's diagonal where it is diagonal: theta_k over the levels of each scalar term k >= 2, 1 on
// the rows of terms with p_k > 1 (their blocks: scale_cols / scale_rows) and on X and y
inline Vec scalar_scales(const Vec& theta, const Ints& p, const Ints& l, const Ints& start,
                         Eigen::Index M) {
  Vec d = Vec::Ones(M);
  Eigen::Index pos = 0;
  for (size_t k = 1; k < p.size(); ++k) {
    if (p[k] == 1) d.segment(pos, l[k]).setConstant(theta[start[k] - 1]);
    pos += static_cast<Eigen::Index>(p[k]) * l[k];
  }
  return d;
}

// A <- A D (cols) or A <- D' A (rows) for D = diag(Lambda2, I); with `transpose`, D' and D
// trade places (A <- A D', A <- D A). The diagonal part column by column (contiguous).
inline void scale_cols(Mat& A, const Vec& theta, const Ints& p, const Ints& l, const Ints& start,
                       bool transpose) {
  A.array().rowwise() *= scalar_scales(theta, p, l, start, A.cols()).transpose().array();
  Eigen::Index pos = 0;
  for (size_t k = 1; k < p.size(); ++k) {
    if (p[k] == 1) {
      pos += l[k];
      continue;
    }
    const Mat T = theta_factor(theta, start[k], p[k]);
    const Mat Tc = transpose ? Mat(T.transpose()) : T;
    for (int j = 0; j < l[k]; ++j, pos += p[k]) A.middleCols(pos, p[k]) = A.middleCols(pos, p[k]) * Tc;
  }
}

inline void scale_rows(Mat& A, const Vec& theta, const Ints& p, const Ints& l, const Ints& start,
                       bool transpose) {
  A.array().colwise() *= scalar_scales(theta, p, l, start, A.rows()).array();
  Eigen::Index pos = 0;
  for (size_t k = 1; k < p.size(); ++k) {
    if (p[k] == 1) {
      pos += l[k];
      continue;
    }
    const Mat T = theta_factor(theta, start[k], p[k]);
    const Mat Tr = transpose ? T : Mat(T.transpose());
    for (int j = 0; j < l[k]; ++j, pos += p[k]) A.middleRows(pos, p[k]) = Tr * A.middleRows(pos, p[k]);
  }
}

// D' S0 with S0 = Zh'Zh - Q (symmetric). Entry (a, b) of level j's block of Q is V_a' U_b, V_c
// the p1 values of B_j's column c and U_c = W_j V_c. U is formed level by level (sequential),
// then Q is subtracted column by column: each column of S0 (M values) stays in cache while
// every level reaching it is applied, and the levels' reads are independent of each other.
// Level by level instead, each level's block landed on entries scattered over the whole
// matrix (20 x 20 of a 2,003 x 2,003 one at 10^6 crossed rows), nearly every one a cache miss.
inline Mat d_times_s0(const Vec& theta, const Vec& w, const Ints& p, const Ints& l,
                      const Ints& start, const Eigen::Ref<const Mat>& zhzh, const Blocks& B,
                      const Columns& C) {
  const int p1 = B.p1;
  const Eigen::Index nz = static_cast<Eigen::Index>(B.v.size());
  const Eigen::Map<const Mat> V(B.w, p1, nz);
  Mat U(p1, nz);
  for (int j = 0; j < B.l1; ++j) {
    const int e0 = B.u[j] - 1, n = B.u[j + 1] - 1 - e0;
    U.middleCols(e0, n).noalias()
        = Eigen::Map<const Mat>(w.data() + static_cast<Eigen::Index>(j) * p1 * p1, p1, p1)
          * V.middleCols(e0, n);
  }
  Mat S0 = zhzh;
  for (Eigen::Index b = 0; b < S0.cols(); ++b) {
    double* col = S0.col(b).data();
    for (int k = C.at[b]; k < C.at[b + 1]; ++k) {
      if (k + kAhead < C.at.back()) prefetch_visit(B, C, k + kAhead, U.data());
      const double* u = U.col(C.entry[k]).data();
      for (int a = C.entry[k]; a < C.end[k]; ++a) {
        const double* Va = B.w + static_cast<Eigen::Index>(a) * p1;
        double acc = 0;
        for (int r = 0; r < p1; ++r) acc += Va[r] * u[r];
        col[B.v[a] - 1] -= acc;
      }
    }
  }
  S0.triangularView<Eigen::StrictlyUpper>() = S0.transpose();
  scale_rows(S0, theta, p, l, start, false);
  return S0;
}

}  // namespace bayesmix_lmm

// [log|S_QQ|; vec(R)]: with S = D'(Zh'Zh - Q(w)) D + E (M = Q2 + P + 1) and L its lower Cholesky
// factor, log|S_QQ| = 2 sum(log(diag(L)[1:Q2])) and R = L[Q2+1:M, Q2+1:M], column-major.
// theta: all relative covariance parameters (terms 2..K are read here; term 1 enters via w).
template <typename TTheta, typename TW, typename TZ, typename TBw>
Eigen::Matrix<stan::return_type_t<TTheta, TW>, -1, 1> lmm_dense_factor(
    const TTheta& theta, const TW& w, const int& P, const int& Q2, const std::vector<int>& p_term,
    const std::vector<int>& l_term, const std::vector<int>& theta_start, const TZ& ZhZh_low,
    const TBw& B_w, const std::vector<int>& B_v, const std::vector<int>& B_u,
    std::ostream* pstream__) {
  using namespace bayesmix_lmm;
  using stan::math::var;
  // the data arguments are the model's members: referenced, not copied, also by the callback
  // below (it runs within the same gradient evaluation; it must hold nothing with a destructor)
  const Vec th = stan::math::value_of(theta).template cast<double>();
  const Vec wv = stan::math::value_of(w).template cast<double>();
  const Eigen::Ref<const Mat> zhzh = stan::math::value_of(ZhZh_low);
  const Eigen::Ref<const Vec> bw = stan::math::value_of(B_w);
  check(P, Q2, p_term, l_term, theta_start, th.size(), wv.size(), zhzh.rows(), zhzh.cols(),
        bw.size(), B_v, B_u);
  const Blocks B{bw.data(), B_v, B_u, l_term[0], p_term[0]};
  const Eigen::Index R1 = P + 1;
  Mat DS0 = d_times_s0(th, wv, p_term, l_term, theta_start, zhzh, B, by_column(B, zhzh.rows()));
  Mat S = DS0;
  scale_cols(S, th, p_term, l_term, theta_start, false);
  S.diagonal().head(Q2).array() += 1;
  S.triangularView<Eigen::StrictlyUpper>() = S.transpose();  // exactly symmetric

  auto values = [&](const Mat& L) {
    Vec out(1 + R1 * R1);
    out[0] = 2 * L.diagonal().head(Q2).array().log().sum();
    Eigen::Map<Mat>(out.data() + 1, R1, R1) = L.bottomRightCorner(R1, R1);
    return out;
  };
  constexpr bool theta_var = stan::is_var<stan::scalar_type_t<TTheta>>::value;
  constexpr bool w_var = stan::is_var<stan::scalar_type_t<TW>>::value;
  if constexpr (!theta_var && !w_var) {
    Eigen::LLT<Mat> llt(S);
    if (llt.info() != Eigen::Success) fail("the reduced system is not positive definite");
    return values(Mat(llt.matrixL()));
  } else {
    // Reverse order of the callbacks below: output -> L (ours), L -> S (Stan's Cholesky),
    // S -> theta, w (ours, registered first so that it runs last).
    stan::math::var_value<Mat> S_v(S);
    auto theta_a = stan::math::to_arena(theta);
    auto w_a = stan::math::to_arena(w);
    stan::arena_t<Mat> DS0_a(DS0);
    stan::arena_t<Vec> th_a(th);
    const Ints *p_p = &p_term, *l_p = &l_term, *start_p = &theta_start;
    stan::math::reverse_pass_callback([S_v, theta_a, w_a, DS0_a, th_a, B, p_p, l_p,
                                       start_p]() mutable {
      const Ints &p = *p_p, &l = *l_p, &start = *start_p;
      const Vec th = th_a;
      // G: the symmetric adjoint of S (Stan's Cholesky fills the lower triangle)
      Mat G = S_v.adj().triangularView<Eigen::Lower>();
      G.triangularView<Eigen::StrictlyLower>() *= 0.5;
      G.triangularView<Eigen::StrictlyUpper>() = G.transpose();
      if constexpr (theta_var) {
        // 2 S0 D G = 2 (D'S0)' G on D's block diagonal
        Eigen::Index pos = 0;
        for (size_t k = 1; k < p.size(); ++k) {
          if (p[k] == 1) {
            double acc = 0;
            for (int j = 0; j < l[k]; ++j, ++pos) acc += DS0_a.col(pos).dot(G.col(pos));
            theta_a[start[k] - 1].adj() += 2 * acc;
            continue;
          }
          Mat acc = Mat::Zero(p[k], p[k]);
          for (int j = 0; j < l[k]; ++j, pos += p[k])
            acc += DS0_a.middleCols(pos, p[k]).transpose() * G.middleCols(pos, p[k]);
          int t = start[k] - 1;
          for (int c = 0; c < p[k]; ++c)
            for (int r = c; r < p[k]; ++r) theta_a[t++].adj() += 2 * acc(r, c);
        }
      }
      if constexpr (w_var) {
        // -D G D' on Q's lower triangle (off-diagonal entries twice), through the products
        scale_rows(G, th, p, l, start, true);
        scale_cols(G, th, p, l, start, true);
        // level j: the adjoint of its weights W_j is sum_b T_b V_b', T_b = sum_{a >= b} M(a, b)
        // V_a with M(b, b) = -G(b, b), M(a, b) = -2 G(a, b) (a > b): the adjoints of the entries
        // of Q's lower triangle its block reaches. T column by column of G, as in d_times_s0,
        // then the sums level by level. (by_column again: the forward pass's copy is gone, and
        // a callback holds nothing that needs a destructor.)
        const int p1 = B.p1;
        const Eigen::Index nz = static_cast<Eigen::Index>(B.v.size());
        const Eigen::Map<const Mat> V(B.w, p1, nz);
        const Columns C = by_column(B, G.rows());
        Mat T(p1, nz);
        for (Eigen::Index b = 0; b < G.cols(); ++b) {
          const double* g = G.col(b).data();
          for (int k = C.at[b]; k < C.at[b + 1]; ++k) {
            if (k + kAhead < C.at.back()) prefetch_visit(B, C, k + kAhead, T.data());
            const int e = C.entry[k];
            double* t = T.col(e).data();
            for (int r = 0; r < p1; ++r) t[r] = -g[b] * V(r, e);
            for (int a = e + 1; a < C.end[k]; ++a) {
              const double c = -2.0 * g[B.v[a] - 1];
              const double* Va = B.w + static_cast<Eigen::Index>(a) * p1;
              for (int r = 0; r < p1; ++r) t[r] += c * Va[r];
            }
          }
        }
        Vec w_adj = Vec::Zero(w_a.size());
        for (int j = 0; j < B.l1; ++j) {
          const int e0 = B.u[j] - 1, n = B.u[j + 1] - 1 - e0;
          Eigen::Map<Mat>(w_adj.data() + static_cast<Eigen::Index>(j) * p1 * p1, p1, p1)
              .noalias() += T.middleCols(e0, n) * V.middleCols(e0, n).transpose();
        }
        w_a.adj() += w_adj;
      }
    });
    stan::math::var_value<Mat> L_v = stan::math::cholesky_decompose(S_v);
    const Vec out_val = values(L_v.val());
    stan::arena_t<Eigen::Matrix<var, -1, 1>> out = out_val;
    stan::math::reverse_pass_callback([out, L_v, Q2, R1]() mutable {
      for (int i = 0; i < Q2; ++i) L_v.adj()(i, i) += 2 * out[0].adj() / L_v.val()(i, i);
      for (Eigen::Index c = 0; c < R1; ++c)
        for (Eigen::Index r = c; r < R1; ++r)
          L_v.adj()(Q2 + r, Q2 + c) += out[1 + c * R1 + r].adj();
    });
    return Eigen::Matrix<var, -1, 1>(out);
  }
}

#endif  // BAYESMIX_LMM_REDUCE_HPP
