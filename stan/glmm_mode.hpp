// The conditional mode u* of glmer's Laplace approximation, in plain double arithmetic.
//
// glmer.stan declares `glmm_mode` and `glmm_half_logdet` without a body (stanc --allow-undefined); this header
// defines it (bayesmix's engine compiles it in; CmdStan takes it as USER_HEADER). It runs
// the Newton iterations for the conditional mode on the values of its arguments, and the
// log-determinant of the Laplace Hessian with its gradient from a selected inverse, so neither
// lands on Stan's autodiff tape (before, every iteration and factorization was taped: at 10^5
// rows that tape held gigabytes). The mode's dependence on the parameters enters the
// program's gradient through one extra term (the implicit function theorem; glmm_laplace).
//
// Stan's generated code calls them unqualified from inside the model's namespace, so a
// definition in the global namespace is found whatever the program is called.
#ifndef BAYESMIX_GLMM_MODE_HPP
#define BAYESMIX_GLMM_MODE_HPP

#include <stan/math.hpp>
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <vector>

namespace bayesmix_glmm {

using Vec = Eigen::VectorXd;
using Mat = Eigen::MatrixXd;
using Ints = std::vector<int>;

// Per observation (glmm_obs): the log density without constants, the score d lp / d eta,
// the Newton weight -d^2 lp / d eta^2, the Fisher weight mu_eta^2 / Var(y) and its derivative
// in eta, wf (2 mu''/mu' - mu' Var'/Var). Returns the sum of the log densities.
struct Terms {
  Vec s, wn, wf, dwf;
  explicit Terms(Eigen::Index n) : s(n), wn(n), wf(n), dwf(n) {}
};

inline double obs(int family, int link, const Vec& eta, const Vec& y, const Vec& ntr,
                  double phi, Terms& t) {
  using stan::math::lgamma;
  double lp_sum = 0;
  for (Eigen::Index i = 0; i < eta.size(); ++i) {
    const double e = eta[i];
    double lp, h, dmu_dlogv;
    if (family == 1) {
      // binomial: r1 = mu' / mu, r0 = mu' / (1 - mu), h = mu'' / mu'
      double lmu, l1mu, r1, r0;
      if (link == 1) {
        lmu = stan::math::log_inv_logit(e);
        l1mu = stan::math::log1m_inv_logit(e);
        r1 = std::exp(l1mu);
        r0 = std::exp(lmu);
        h = r1 - r0;
      } else if (link == 2) {
        const double lphi = -0.5 * e * e - 0.5 * std::log(2 * stan::math::pi());
        lmu = stan::math::std_normal_lcdf(e);
        l1mu = stan::math::std_normal_lccdf(e);
        r1 = std::exp(lphi - lmu);
        r0 = std::exp(lphi - l1mu);
        h = -e;
      } else if (link == 3) {
        const double ee = std::exp(e);
        l1mu = -ee;
        lmu = stan::math::log1m_exp(-ee);
        r0 = ee;
        r1 = ee / std::expm1(ee);
        h = 1 - ee;
      } else {  // log
        lmu = e;
        l1mu = stan::math::log1m_exp(e);
        r1 = 1;
        r0 = std::exp(e - l1mu);
        h = 1;
      }
      const double yi = y[i], fi = ntr[i] - y[i];
      lp = yi * lmu + fi * l1mu;
      t.s[i] = yi * r1 - fi * r0;
      t.wf[i] = ntr[i] * r1 * r0;
      t.wn[i] = yi * r1 * r1 + fi * r0 * r0 - t.s[i] * h;
      dmu_dlogv = r1 - r0;  // mu' (1 - 2 mu) / (mu (1 - mu))
    } else {
      double mu, dmu, lmu, V, dlogV;
      if (link == 4) {
        mu = std::exp(e), dmu = mu, h = 1, lmu = e;
      } else if (link == 5) {
        mu = e, dmu = 1, h = 0, lmu = std::log(mu);
      } else if (link == 6) {
        mu = 1 / e, dmu = -mu * mu, h = -2 * mu, lmu = std::log(mu);
      } else {  // sqrt
        mu = e * e, dmu = 2 * e, h = 1 / e, lmu = std::log(mu);
      }
      const double yi = y[i];
      if (family == 2) {
        V = mu, dlogV = 1 / mu;
        lp = yi * lmu - mu;
      } else if (family == 3) {
        const double lpm = std::log(phi + mu);
        V = mu + mu * mu / phi;
        dlogV = (1 + 2 * mu / phi) / V;
        lp = lgamma(yi + phi) - lgamma(phi) + phi * (std::log(phi) - lpm) + yi * (lmu - lpm);
      } else {  // Gamma with shape phi
        V = mu * mu / phi;
        dlogV = 2 / mu;
        lp = phi * (std::log(phi) - lmu - yi / mu) - lgamma(phi) + (phi - 1) * std::log(yi);
      }
      t.s[i] = (yi - mu) * dmu / V;
      t.wf[i] = dmu * dmu / V;
      t.wn[i] = t.wf[i] - t.s[i] * (h - dmu * dlogV);
      dmu_dlogv = dmu * dlogV;
    }
    t.dwf[i] = t.wf[i] * (2 * h - dmu_dlogv);
    lp_sum += lp;
  }
  return lp_sum;
}

// eta0 + Z Lambda u from the row-wise non-zeros (glmm_eta)
inline Vec eta_of(const Vec& eta0, const Mat& zl, const std::vector<Ints>& col, const Vec& u) {
  Vec eta = eta0;
  for (Eigen::Index r = 0; r < zl.cols(); ++r)
    for (Eigen::Index i = 0; i < zl.rows(); ++i) eta[i] += zl(i, r) * u[col[r][i] - 1];
  return eta;
}

// y += A x for the CSR matrix with values w (or ones), 1-based column indices v, row starts u
inline void csr_add(Vec& y, const Vec* w, const Ints& v, const Ints& u, const Vec& x) {
  for (size_t row = 0; row + 1 < u.size(); ++row) {
    double acc = 0;
    for (int j = u[row] - 1; j < u[row + 1] - 1; ++j) acc += (w ? (*w)[j] : 1.0) * x[v[j] - 1];
    y[row] += acc;
  }
}

// The sparse structure of H = Lambda'Z'WZ Lambda + I (bayesmix.lmm.sparsity), as glmer.stan's
// data hold it: the first term's level blocks, the cells of H21 (sorted by level, then row,
// lev_u: each level's first cell) and the positions of H22's non-zeros.
struct Structure {
  const std::vector<Ints>& col;
  const Vec& hs_base;
  const Ints &hs_v, &hs_u, &gr_v, &gr_u, &cell_row, &cell_lev, &lev_u, &h22_row, &h22_col;
  int q1, p1, q2;
};

// Every index of the structure within range (the data may come from an edited bundle; the
// loops below do not check).
inline void check(const Structure& st, Eigen::Index N, Eigen::Index R) {
  auto within = [](const Ints& v, long lo, long hi, const char* what) {
    for (int x : v)
      if (x < lo || x > hi) throw std::domain_error(std::string("glmm: index out of range in ") + what);
  };
  auto starts = [&](const Ints& u, long rows, long n, const char* what) {
    if (static_cast<long>(u.size()) != rows + 1 || u.front() != 1 || u.back() != n + 1)
      throw std::domain_error(std::string("glmm: bad row starts ") + what);
    for (size_t k = 1; k < u.size(); ++k)
      if (u[k] < u[k - 1]) throw std::domain_error(std::string("glmm: bad row starts ") + what);
  };
  const long q1 = st.q1, p1 = st.p1, l1 = q1 / std::max(p1, 1L), q2 = st.q2, Q = q1 + q2;
  const long n_cell = static_cast<long>(st.cell_row.size());
  const long n_h22 = static_cast<long>(st.h22_row.size());
  if (p1 < 1 || q1 % p1 != 0 || q2 < 0 || static_cast<long>(st.col.size()) != R || R < p1
      || st.hs_base.size() != (q1 + n_cell) * p1 + n_h22
      || st.cell_lev.size() != st.cell_row.size() || st.h22_col.size() != st.h22_row.size())
    throw std::domain_error("glmm: inconsistent sizes in the sparse structure");
  for (const Ints& c : st.col) {
    if (static_cast<Eigen::Index>(c.size()) != N) throw std::domain_error("glmm: col has the wrong size");
    within(c, 1, Q, "col");
  }
  for (Eigen::Index i = 0; i < N; ++i)
    if (st.col[0][i] > q1) throw std::domain_error("glmm: col[1] leaves the first term");
  for (Eigen::Index r = p1; r < R; ++r) within(st.col[r], q1 + 1, Q, "col");
  starts(st.hs_u, st.hs_base.size(), st.hs_v.size(), "hs_u");
  within(st.hs_v, 1, N * (R * (R + 1) / 2), "hs_v");
  starts(st.gr_u, Q, st.gr_v.size(), "gr_u");
  within(st.gr_v, 1, N * R, "gr_v");
  within(st.cell_row, 1, q2, "cell_row");
  within(st.cell_lev, 1, l1, "cell_lev");
  starts(st.lev_u, l1, n_cell, "lev_u");
  for (long j = 0; j < l1; ++j)
    for (int c = st.lev_u[j]; c < st.lev_u[j + 1]; ++c)
      if (st.cell_lev[c - 1] != j + 1
          || (c > st.lev_u[j] && st.cell_row[c - 1] <= st.cell_row[c - 2]))
        throw std::domain_error("glmm: cells not sorted by level, then row");
  within(st.h22_row, 1, q2, "h22_row");
  within(st.h22_col, 1, q2, "h22_col");
}

// The factor of H = [[A, H21'], [H21, H22]] by elimination of the first term (A block
// diagonal, one p1 x p1 block per level): L = [[L_A, 0], [L21, L_S]], L21 = H21 L_A^-T kept
// as its cells (Lc, column c = cell c), L_S the factor of S = H22 - L21 L21'.
struct Factor {
  std::vector<Eigen::LLT<Mat>> LA;
  Mat Lc;
  Eigen::LLT<Mat> LS;
  int q2 = 0;
  double half_logdet = 0;  // log|H| / 2
};

inline Factor factor(const Structure& st, const Mat& zl, const Vec& w) {
  const Eigen::Index N = zl.rows(), R = zl.cols();
  const int q1 = st.q1, p1 = st.p1, l1 = q1 / p1;
  const int n_cell = static_cast<int>(st.cell_row.size());
  // H's slots from the pair products w_i (Z Lambda)_ir (Z Lambda)_is (glmm_hessian_blocks)
  Vec pt(N * (R * (R + 1) / 2));
  Eigen::Index pos = 0;
  for (Eigen::Index a = 0; a < R; ++a)
    for (Eigen::Index b = 0; b <= a; ++b, pos += N)
      pt.segment(pos, N) = w.cwiseProduct(zl.col(a)).cwiseProduct(zl.col(b));
  Vec hv = st.hs_base;
  csr_add(hv, nullptr, st.hs_v, st.hs_u, pt);
  const Eigen::Index nA = static_cast<Eigen::Index>(q1) * p1;
  const Eigen::Index nC = static_cast<Eigen::Index>(n_cell) * p1;
  Eigen::Map<const Mat> A(hv.data(), p1, q1);
  Eigen::Map<const Mat> Hc(hv.data() + nA, p1, n_cell);
  Factor f;
  f.LA.resize(l1);
  for (int j = 0; j < l1; ++j) {
    f.LA[j].compute(A.middleCols(j * p1, p1));  // reads the lower triangle
    if (f.LA[j].info() != Eigen::Success)
      throw std::domain_error("glmm: a level block of the Laplace Hessian is not positive definite");
    f.half_logdet += f.LA[j].matrixLLT().diagonal().array().log().sum();
  }
  f.Lc.resize(p1, n_cell);
  for (int c = 0; c < n_cell; ++c)
    f.Lc.col(c) = f.LA[st.cell_lev[c] - 1].matrixL().solve(Hc.col(c));
  const Eigen::Index n_h22 = hv.size() - nA - nC;
  f.q2 = st.q2;
  if (f.q2 > 0) {
    // S = H22 - L21 L21' (lower triangle, all LLT reads): H22's non-zeros, then the products
    // of every pair of cells that share a level
    Mat S = Mat::Zero(f.q2, f.q2);
    for (Eigen::Index k = 0; k < n_h22; ++k) {
      const int a = st.h22_row[k] - 1, b = st.h22_col[k] - 1;
      S(std::max(a, b), std::min(a, b)) += hv[nA + nC + k];
    }
    // Column by column of S: column r's cells (the levels reaching row r) each subtract their
    // products with their level's later cells (rows > r: check), while the column, q2 values,
    // stays in cache. Level by level, every product landed on a scattered entry of the whole
    // q2 x q2 matrix (2,000 levels of 50 cells into 500 x 500 at 10^5 rows), most of them cache
    // misses. Each entry still gets its levels' products in level order.
    // (by_row: the cells row by row; end: one past the last cell of each one's level)
    Ints at(f.q2 + 1, 0), by_row(n_cell), end_of(n_cell);
    for (int c = 0; c < n_cell; ++c) ++at[st.cell_row[c]];  // 1-based: lands a row ahead
    for (int r = 0; r < f.q2; ++r) at[r + 1] += at[r];
    Ints next(at.begin(), at.end() - 1);
    for (int c = 0; c < n_cell; ++c) {
      const int k = next[st.cell_row[c] - 1]++;
      by_row[k] = c;
      end_of[k] = st.lev_u[st.cell_lev[c]] - 1;
    }
    for (int rb = 0; rb < f.q2; ++rb) {
      double* col = S.col(rb).data();
      for (int k = at[rb]; k < at[rb + 1]; ++k) {
        const int b = by_row[k], end = end_of[k];
        const double* lb = f.Lc.col(b).data();
        if (p1 == 1) {  // random intercepts: one value per cell
          const double* la = f.Lc.data();
          for (int a = b; a < end; ++a) col[st.cell_row[a] - 1] -= la[a] * lb[0];
          continue;
        }
        for (int a = b; a < end; ++a) {
          const double* la = f.Lc.col(a).data();
          double dot = 0;
          for (int r = 0; r < p1; ++r) dot += la[r] * lb[r];
          col[st.cell_row[a] - 1] -= dot;
        }
      }
    }
    f.LS.compute(S);
    if (f.LS.info() != Eigen::Success)
      throw std::domain_error("glmm: the Schur complement of the Laplace Hessian is not positive definite");
    f.half_logdet += f.LS.matrixLLT().diagonal().array().log().sum();
  }
  return f;
}

// H^-1 r with the factor (glmm_block_solve)
inline Vec solve(const Structure& st, const Factor& f, const Vec& r) {
  const int q1 = st.q1, p1 = st.p1, l1 = q1 / p1, q2 = f.q2;
  Vec y1(q1);
  for (int j = 0; j < l1; ++j)
    y1.segment(j * p1, p1) = f.LA[j].matrixL().solve(r.segment(j * p1, p1));
  Vec x(q1 + q2);
  if (q2 > 0) {
    Vec rhs = r.tail(q2);
    for (Eigen::Index c = 0; c < f.Lc.cols(); ++c)
      rhs[st.cell_row[c] - 1] -= f.Lc.col(c).dot(y1.segment((st.cell_lev[c] - 1) * p1, p1));
    x.tail(q2) = f.LS.solve(rhs);
    for (Eigen::Index c = 0; c < f.Lc.cols(); ++c)
      y1.segment((st.cell_lev[c] - 1) * p1, p1) -= x[q1 + st.cell_row[c] - 1] * f.Lc.col(c);
  }
  for (int j = 0; j < l1; ++j)
    x.segment(j * p1, p1) = f.LA[j].matrixU().solve(y1.segment(j * p1, p1));
  return x;
}

// (Z Lambda)' v, from the row-wise non-zeros
inline Vec zl_t(const Structure& st, const Mat& zl, const Vec& v) {
  Mat zs = zl.array().colwise() * v.array();
  Vec g = Vec::Zero(st.gr_u.size() - 1);
  csr_add(g, nullptr, st.gr_v, st.gr_u, Eigen::Map<const Vec>(zs.data(), zs.size()));
  return g;
}

// For every row i with non-zeros z_i (its R columns of Z Lambda) and M_i the R x R block of
// H^-1 at those columns: lev_i = z_i' M_i z_i and the rows M_i z_i. Only those entries of H^-1
// are formed (a selected inverse): per level of the first term
//   H^-1_11 = L_A^-T (I + Lc S^-1 Lc') L_A^-1   (Lc: the level's cells, S^-1 at their rows),
//   H^-1_21 = -S^-1 L21 L_A^-1,   H^-1_22 = S^-1.
struct RowInverse {
  Vec lev;
  Mat Mz;
};

inline RowInverse row_inverse(const Structure& st, const Factor& f, const Mat& zl) {
  const Eigen::Index N = zl.rows(), R = zl.cols();
  const int q1 = st.q1, p1 = st.p1, l1 = q1 / p1, q2 = f.q2;
  Mat Sinv;
  if (q2 > 0) Sinv = f.LS.solve(Mat::Identity(q2, q2));
  Mat A11(p1, q1);  // H^-1_11, level by level
  std::vector<Mat> LinvT(l1);  // L_A^-T, level by level
  // E: for cell c of level j, with row a, sum over j's cells c' of S^-1(row c', a) Lc_c' (the
  // level's part of H^-1_12 at column a, before L_A^-T), which every observation of the cell
  // needs
  Mat E(p1, f.Lc.cols());
  for (int j = 0; j < l1; ++j) {
    const int c0 = st.lev_u[j] - 1, n = st.lev_u[j + 1] - 1 - c0;
    Mat inner = Mat::Identity(p1, p1);
    if (n > 0 && q2 > 0) {
      Mat G(n, n);
      for (int b = 0; b < n; ++b)
        for (int a = 0; a < n; ++a)
          G(a, b) = Sinv(st.cell_row[c0 + a] - 1, st.cell_row[c0 + b] - 1);
      const auto Lcj = f.Lc.middleCols(c0, n);
      E.middleCols(c0, n).noalias() = Lcj * G;
      inner.noalias() += E.middleCols(c0, n) * Lcj.transpose();
    }
    LinvT[j] = f.LA[j].matrixU().solve(Mat::Identity(p1, p1));
    A11.middleCols(j * p1, p1) = LinvT[j] * inner * LinvT[j].transpose();
  }
  RowInverse out{Vec(N), Mat(N, R)};
  Mat M(R, R);
  for (Eigen::Index i = 0; i < N; ++i) {
    const int j = (st.col[0][i] - 1) / p1;
    M.topLeftCorner(p1, p1) = A11.middleCols(j * p1, p1);
    if (R > p1) {
      const int c0 = st.lev_u[j] - 1, c1 = st.lev_u[j + 1] - 1;
      for (Eigen::Index r = p1; r < R; ++r) {
        const int a = st.col[r][i] - 1 - q1;
        // the cell of level j at row a: row i itself put a non-zero there
        const int c = static_cast<int>(
            std::lower_bound(st.cell_row.begin() + c0, st.cell_row.begin() + c1, a + 1)
            - st.cell_row.begin());
        if (c == c1 || st.cell_row[c] != a + 1)
          throw std::domain_error("glmm: an observation's cell is missing from the structure");
        M.block(0, r, p1, 1) = -LinvT[j] * E.col(c);
        M.block(r, 0, 1, p1) = M.block(0, r, p1, 1).transpose();
        for (Eigen::Index s = p1; s <= r; ++s)
          M(r, s) = M(s, r) = Sinv(a, st.col[s][i] - 1 - q1);
      }
    }
    const Vec z = zl.row(i).transpose();
    const Vec mz = M * z;
    out.Mz.row(i) = mz.transpose();
    out.lev[i] = z.dot(mz);
  }
  return out;
}

// Newton's method with step halving on g(u) = log p(y | u) - |u|^2 / 2 from u_start (u = 0
// where g is not finite there), with the Fisher weights while any Newton weight is negative.
inline Vec mode(const Vec& eta0, const Mat& zl, int family, int link, const Vec& y,
                const Vec& ntr, double phi, int max_iter, double tol, const Vec& u_start,
                const Structure& st) {
  const Eigen::Index N = eta0.size();
  Vec u = u_start;
  Terms t(N), t_new(N);
  double g = obs(family, link, eta_of(eta0, zl, st.col, u), y, ntr, phi, t) - 0.5 * u.squaredNorm();
  if (!std::isfinite(g)) {
    u.setZero();
    g = obs(family, link, eta0, y, ntr, phi, t);
  }
  for (int it = 0; it < max_iter; ++it) {
    const Vec& w = t.wn.minCoeff() < 0 ? t.wf : t.wn;
    const Vec delta = solve(st, factor(st, zl, w), zl_t(st, zl, t.s) - u);
    double step = 1;
    Vec u_new = u + delta;
    double g_new = obs(family, link, eta_of(eta0, zl, st.col, u_new), y, ntr, phi, t_new)
                   - 0.5 * u_new.squaredNorm();
    for (int halvings = 0; !(g_new >= g - 1e-10 * (1 + std::abs(g))) && halvings < 30; ++halvings) {
      step *= 0.5;
      u_new = u + step * delta;
      g_new = obs(family, link, eta_of(eta0, zl, st.col, u_new), y, ntr, phi, t_new)
              - 0.5 * u_new.squaredNorm();
    }
    u.swap(u_new);
    std::swap(t, t_new);
    g = g_new;
    if (step * delta.cwiseAbs().maxCoeff() < tol * (1 + u.cwiseAbs().maxCoeff())) break;
  }
  return u;
}

// d value / d eta for lme4's Gamma value: the density at the dispersion dev(mu) / N (shape
// phi_d = N / dev), whose derivative runs through every mean.
inline Vec gamma_value_deta(int link, const Vec& eta, const Vec& y) {
  const Eigen::Index N = eta.size();
  Vec mu(N), dmu(N);
  for (Eigen::Index i = 0; i < N; ++i) {
    const double e = eta[i];
    if (link == 4) mu[i] = std::exp(e), dmu[i] = mu[i];
    else if (link == 5) mu[i] = e, dmu[i] = 1;
    else if (link == 6) mu[i] = 1 / e, dmu[i] = -mu[i] * mu[i];
    else mu[i] = e * e, dmu[i] = 2 * e;
  }
  double dev = 0;
  for (Eigen::Index i = 0; i < N; ++i) dev += 2 * ((y[i] - mu[i]) / mu[i] - std::log(y[i] / mu[i]));
  const double phi = N / dev;  // 1 / disp
  double dphi_sum = 0;         // sum_i d lp_i / d phi
  for (Eigen::Index i = 0; i < N; ++i)
    dphi_sum += std::log(phi) + 1 - std::log(mu[i]) - y[i] / mu[i] - stan::math::digamma(phi)
                + std::log(y[i]);
  Vec out(N);
  for (Eigen::Index i = 0; i < N; ++i) {
    const double score = phi * (y[i] - mu[i]) * dmu[i] / (mu[i] * mu[i]);
    const double ddev = 2 * (mu[i] - y[i]) / (mu[i] * mu[i]) * dmu[i];
    out[i] = score + dphi_sum * (-phi * phi / N) * ddev;
  }
  return out;
}

// Canonical links (bernoulli/binomial logit, poisson log): the Newton weights are the Fisher
// weights, so H_N is the Fisher H.
inline bool family_is_canonical(int family, int link) {
  return (family == 1 && link == 1) || (family == 2 && link == 4);
}

// The factor and selected inverse glmm_mode formed at u* for the log-determinant, which the
// program asks for next (glmm_half_logdet): reused when its zl and weights are the same
// values, formed anew otherwise. One per thread.
struct LastLogdet {
  Mat zl;
  Vec w;
  Factor f;
  RowInverse ri;
  bool valid = false;
};

inline LastLogdet& last_logdet() {
  thread_local LastLogdet cache;
  return cache;
}

// [u*; v]: the mode, and v = H_N^-1 c with c the gradient in u of the program's value
// (log p(y | u) - |u|^2 / 2 - log|H| / 2, H with the Fisher weights) at u*, H_N the exact
// Newton matrix. The program adds v' grad g(u*), zero in value: its derivative carries
// c' du*/dpsi = c' H_N^-1 d grad g / dpsi, the part of the value's derivative that runs
// through the mode (the implicit function theorem), so nothing of the mode is taped.
inline Vec mode_and_direction(const Vec& eta0, const Mat& zl, int family, int link,
                              const Vec& y, const Vec& ntr, double phi, int max_iter,
                              double tol, const Vec& u_start, const Structure& st) {
  const Vec u = mode(eta0, zl, family, link, y, ntr, phi, max_iter, tol, u_start, st);
  const Eigen::Index N = eta0.size(), Q = u.size();
  const Vec eta = eta_of(eta0, zl, st.col, u);
  Terms t(N);
  obs(family, link, eta, y, ntr, phi, t);
  Factor hf = factor(st, zl, t.wf);
  RowInverse ri = row_inverse(st, hf, zl);
  // c = d value / du: -(Z Lambda)' (dwf .* lev) / 2, plus for lme4's Gamma the value's own
  // gradient (g's is zero at the mode)
  Vec c = -0.5 * zl_t(st, zl, t.dwf.cwiseProduct(ri.lev));
  if (family == 4) c += zl_t(st, zl, gamma_value_deta(link, eta, y)) - u;
  Vec out(2 * Q);
  out.head(Q) = u;
  const bool canonical = family_is_canonical(family, link);
  const Factor hn = canonical ? Factor() : factor(st, zl, t.wn);
  out.tail(Q) = solve(st, canonical ? hf : hn, c);
  last_logdet() = {zl, t.wf, std::move(hf), std::move(ri), true};
  return out;
}

template <typename T>
Vec vector_value(const T& x) {
  return stan::math::value_of(x).template cast<double>();
}

template <typename T>
Mat matrix_value(const T& x) {
  return stan::math::value_of(x).template cast<double>();
}

}  // namespace bayesmix_glmm

// The signatures glmer.stan declares (data arguments arrive as values already; the others
// may carry derivatives).

// [u*; v] (see mode_and_direction), without derivatives.
template <typename TEta, typename TZl, typename TY, typename TNtr, typename TPhi, typename TTol,
          typename TU, typename TBase>
Eigen::VectorXd glmm_mode(const TEta& eta0, const TZl& zl, const std::vector<std::vector<int>>& col,
                          const int& family, const int& link, const TY& y, const TNtr& ntr,
                          const TPhi& phi, const int& max_iter, const TTol& tol, const TU& u_start,
                          const TBase& hs_base, const std::vector<int>& hs_v,
                          const std::vector<int>& hs_u, const std::vector<int>& gr_v,
                          const std::vector<int>& gr_u, const std::vector<int>& cell_row,
                          const std::vector<int>& cell_lev, const std::vector<int>& lev_u,
                          const std::vector<int>& h22_row, const std::vector<int>& h22_col,
                          const int& q1, const int& p1, std::ostream* pstream__) {
  using namespace bayesmix_glmm;
  const Vec base = vector_value(hs_base);
  const Structure st{col,      base,  hs_v,    hs_u,    gr_v, gr_u,
                     cell_row, cell_lev, lev_u, h22_row, h22_col, q1, p1,
                     static_cast<int>(gr_u.size()) - 1 - q1};
  check(st, eta0.size(), zl.cols());
  if (u_start.size() != q1 + st.q2) throw std::domain_error("glmm: u_start has the wrong size");
  return mode_and_direction(vector_value(eta0), matrix_value(zl), family, link,
                            vector_value(y), vector_value(ntr), stan::math::value_of(phi),
                            max_iter, stan::math::value_of(tol), vector_value(u_start), st);
}

// log|H| / 2 for H = (Z Lambda)' diag(w) (Z Lambda) + I, with its gradient in zl and w from
// the selected inverse (d/dw_i = lev_i / 2, d/dzl_i = w_i M_i z_i): the factorization never
// reaches the autodiff tape.
template <typename TZl, typename TW, typename TBase>
stan::return_type_t<TZl, TW> glmm_half_logdet(
    const TZl& zl, const TW& w, const std::vector<std::vector<int>>& col, const TBase& hs_base,
    const std::vector<int>& hs_v, const std::vector<int>& hs_u, const std::vector<int>& gr_v,
    const std::vector<int>& gr_u, const std::vector<int>& cell_row,
    const std::vector<int>& cell_lev, const std::vector<int>& lev_u,
    const std::vector<int>& h22_row, const std::vector<int>& h22_col, const int& q1,
    const int& p1, std::ostream* pstream__) {
  using namespace bayesmix_glmm;
  const Vec base = vector_value(hs_base);
  const Structure st{col,      base,  hs_v,    hs_u,    gr_v, gr_u,
                     cell_row, cell_lev, lev_u, h22_row, h22_col, q1, p1,
                     static_cast<int>(gr_u.size()) - 1 - q1};
  const Mat zlv = matrix_value(zl);
  const Vec wv = vector_value(w);
  check(st, zlv.rows(), zlv.cols());
  if (wv.size() != zlv.rows()) throw std::domain_error("glmm: w has the wrong size");
  LastLogdet& last = last_logdet();
  const bool reuse = last.valid && last.zl.rows() == zlv.rows() && last.zl.cols() == zlv.cols()
                     && last.w.size() == wv.size() && last.zl == zlv && last.w == wv;
  last.valid = false;
  const Factor f = reuse ? std::move(last.f) : factor(st, zlv, wv);
  constexpr bool zl_var = stan::is_var<stan::scalar_type_t<TZl>>::value;
  constexpr bool w_var = stan::is_var<stan::scalar_type_t<TW>>::value;
  if constexpr (!zl_var && !w_var) {
    return f.half_logdet;
  } else {
    const RowInverse ri = reuse ? std::move(last.ri) : row_inverse(st, f, zlv);
    stan::arena_t<Mat> dzl = (ri.Mz.array().colwise() * wv.array()).matrix();
    stan::arena_t<Vec> dw = 0.5 * ri.lev;
    auto zl_a = stan::math::to_arena(zl);
    auto w_a = stan::math::to_arena(w);
    return stan::math::make_callback_var(f.half_logdet, [zl_a, w_a, dzl, dw](auto& vi) mutable {
      if constexpr (zl_var) zl_a.adj() += vi.adj() * dzl;
      if constexpr (w_var) w_a.adj() += vi.adj() * dw;
    });
  }
}

#endif  // BAYESMIX_GLMM_MODE_HPP
