// bayesmix's Stan driver: the small `main` that CmdStan would otherwise
// provide. It is compiled once per toolchain and linked with each model's
// object file (which defines `new_model`). It runs Stan's own service
// functions and writes Stan CSV files in CmdStan's layout, so that
// cmdstanpy.from_csv() and ArviZ read them unchanged.
//
// Usage: driver METHOD key=value ...
//   sample:   data= init= output= (prefix; files are <prefix>_<chain>.csv)
//             chains= seed= num_warmup= num_samples= thin= save_warmup=
//             adapt_delta= max_depth= metric=diag_e|dense_e stepsize=
//             init_radius= refresh= sig_figs= model_name=
//   optimize: data= init= output= seed= algorithm=lbfgs|bfgs|newton
//             jacobian=0|1 iter= tol_obj= tol_rel_obj= tol_grad=
//             tol_rel_grad= tol_param= history_size= init_alpha= hessian=0|1 ...
//   laplace:  data= mode= (JSON of constrained values) mode_csv= output=
//             draws= jacobian= seed= ...
//
// Data files ending in .json are Stan JSON; files ending in .bin are our
// binary format (written by bayesmix.engine.bundled.write_binary_data), read
// without parsing:
//   8 bytes  magic "BMXDATA1"
//   uint32   number of variables, then for each variable:
//   uint32   length of the name, the name's bytes
//   uint8    type: 0 = float64, 1 = int32
//   uint32   number of dimensions, then that many uint64 dimensions
//   values   prod(dims) float64 or int32, column-major (Stan's var_context
//            order); everything little-endian.
//
// Before the method runs the driver prints `data_read_seconds = ...` and
// `model_setup_seconds = ...`. After an optimization it prints one line
//   optimum_gradient = g1,g2,...
// the gradient of the objective (log density, with the jacobian setting of
// the run) in the unconstrained parameters at the point it wrote; with
// hessian=1 also
//   optimum_hessian = h11,h12,...,h1k,h21,...
// its Hessian there (row-major), by central differences of Stan's gradient:
// 2k gradients instead of the 2k^2 log densities that a caller differencing
// values would need, and far less rounding error.
#include <stan/callbacks/interrupt.hpp>
#include <stan/callbacks/stream_logger.hpp>
#include <stan/callbacks/unique_stream_writer.hpp>
#include <stan/callbacks/writer.hpp>
#include <stan/io/array_var_context.hpp>
#include <stan/io/empty_var_context.hpp>
#include <stan/io/json/json_data.hpp>
#include <stan/model/log_prob_grad.hpp>
#include <stan/model/model_base.hpp>
#include <stan/services/optimize/bfgs.hpp>
#include <stan/services/optimize/laplace_sample.hpp>
#include <stan/services/optimize/lbfgs.hpp>
#include <stan/services/optimize/newton.hpp>
#include <stan/io/chained_var_context.hpp>
#include <stan/io/random_var_context.hpp>
#include <stan/optimization/bfgs.hpp>
#include <stan/services/error_codes.hpp>
#include <stan/services/util/create_rng.hpp>
#include <stan/services/sample/hmc_nuts_dense_e_adapt.hpp>
#include <stan/services/sample/hmc_nuts_diag_e_adapt.hpp>
#include <stan/services/util/create_unit_e_dense_inv_metric.hpp>
#include <stan/services/util/create_unit_e_diag_inv_metric.hpp>
#include <stan/version.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#ifdef __GLIBC__
#include <malloc.h>
#endif

stan::model::model_base& new_model(stan::io::var_context& data_context,
                                   unsigned int seed, std::ostream* msg_stream);

namespace {

using Args = std::map<std::string, std::string>;

std::string get(const Args& a, const std::string& key, const std::string& def) {
  auto it = a.find(key);
  return it == a.end() ? def : it->second;
}
double num(const Args& a, const std::string& key, double def) {
  auto it = a.find(key);
  return it == a.end() ? def : std::stod(it->second);
}

// A var_context over our binary data format (see the top of this file).
class binary_var_context : public stan::io::var_context {
  template <typename T>
  using entry = std::pair<std::vector<T>, std::vector<size_t>>;
  std::map<std::string, entry<double>> vars_r_;
  std::map<std::string, entry<int>> vars_i_;

  template <typename T>
  static void read_raw(std::istream& in, T* out, size_t n,
                       const std::string& path) {
    in.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(n * sizeof(T)));
    if (!in)
      throw std::invalid_argument("truncated binary data file " + path);
  }

 public:
  explicit binary_var_context(const std::string& path) {
    static_assert(sizeof(double) == 8 && sizeof(int) == 4, "unsupported platform");
    std::ifstream in(path, std::ios::binary);
    if (!in)
      throw std::invalid_argument("cannot open data file " + path);
    char magic[8];
    read_raw(in, magic, 8, path);
    if (std::memcmp(magic, "BMXDATA1", 8) != 0)
      throw std::invalid_argument(path + " is not a bayesmix binary data file");
    uint32_t n_vars;
    read_raw(in, &n_vars, 1, path);
    for (uint32_t v = 0; v < n_vars; ++v) {
      uint32_t len;
      read_raw(in, &len, 1, path);
      std::string name(len, '\0');
      read_raw(in, &name[0], len, path);
      uint8_t type;
      read_raw(in, &type, 1, path);
      uint32_t ndim;
      read_raw(in, &ndim, 1, path);
      std::vector<uint64_t> d64(ndim);
      read_raw(in, d64.data(), ndim, path);
      std::vector<size_t> dims(d64.begin(), d64.end());
      size_t n = 1;
      for (size_t d : dims)
        n *= d;
      if (type == 0) {
        std::vector<double> vals(n);
        read_raw(in, vals.data(), n, path);
        vars_r_[name] = {std::move(vals), std::move(dims)};
      } else if (type == 1) {
        std::vector<int> vals(n);
        read_raw(in, vals.data(), n, path);
        vars_i_[name] = {std::move(vals), std::move(dims)};
      } else {
        throw std::invalid_argument("bad type code in " + path);
      }
    }
  }

  bool contains_r(const std::string& name) const override {
    return vars_r_.count(name) > 0 || contains_i(name);
  }
  bool contains_i(const std::string& name) const override {
    return vars_i_.count(name) > 0;
  }
  std::vector<double> vals_r(const std::string& name) const override {
    auto r = vars_r_.find(name);
    if (r != vars_r_.end())
      return r->second.first;
    auto i = vars_i_.find(name);
    if (i != vars_i_.end())
      return {i->second.first.begin(), i->second.first.end()};
    return {};
  }
  std::vector<std::complex<double>> vals_c(const std::string& name) const override {
    std::vector<double> r = vals_r(name);
    std::vector<std::complex<double>> c(r.size() / 2);
    for (size_t k = 0; k < c.size(); ++k)
      c[k] = {r[2 * k], r[2 * k + 1]};
    return c;
  }
  std::vector<size_t> dims_r(const std::string& name) const override {
    auto r = vars_r_.find(name);
    if (r != vars_r_.end())
      return r->second.second;
    return dims_i(name);
  }
  std::vector<int> vals_i(const std::string& name) const override {
    auto i = vars_i_.find(name);
    return i == vars_i_.end() ? std::vector<int>{} : i->second.first;
  }
  std::vector<size_t> dims_i(const std::string& name) const override {
    auto i = vars_i_.find(name);
    return i == vars_i_.end() ? std::vector<size_t>{} : i->second.second;
  }
  void names_r(std::vector<std::string>& names) const override {
    names.clear();
    for (const auto& kv : vars_r_)
      names.push_back(kv.first);
  }
  void names_i(std::vector<std::string>& names) const override {
    names.clear();
    for (const auto& kv : vars_i_)
      names.push_back(kv.first);
  }
  // As stan::json::json_data: sizes must match, except that absent and empty
  // variables are interchangeable when zero elements are declared.
  void validate_dims(const std::string& stage, const std::string& name,
                     const std::string& base_type,
                     const std::vector<size_t>& dims_declared) const override {
    const bool exists = contains_r(name);
    std::vector<size_t> dims = dims_r(name);
    size_t found = exists ? 1 : 0;
    for (size_t d : dims)
      found *= d;
    size_t expected = 1;
    for (size_t d : dims_declared)
      expected *= d;
    if (found == 0 && expected == 0)
      return;
    if (!exists) {
      throw std::runtime_error("variable does not exist; processing stage="
                               + stage + "; variable name=" + name
                               + "; base type=" + base_type);
    }
    if (dims != dims_declared) {
      std::stringstream msg;
      msg << "mismatch in dimensions declared and found in context"
          << "; processing stage=" << stage << "; variable name=" << name
          << "; dims declared=";
      dims_msg(msg, dims_declared);
      msg << "; dims found=";
      dims_msg(msg, dims);
      throw std::runtime_error(msg.str());
    }
    if (base_type == "int" && !contains_i(name))
      throw std::runtime_error("int variable contained non-int values; processing stage="
                               + stage + "; variable name=" + name);
  }
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size()
         && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::shared_ptr<stan::io::var_context> read_json(const std::string& path) {
  if (path.empty())
    return std::make_shared<stan::io::empty_var_context>();
  if (ends_with(path, ".bin"))
    return std::make_shared<binary_var_context>(path);
  std::ifstream in(path);
  if (!in)
    throw std::invalid_argument("cannot open JSON file " + path);
  return std::make_shared<stan::json::json_data>(in);
}

// Passes everything on to the CSV writer and keeps the last row of values
// (the optimum an optimizer writes last).
class last_row_writer : public stan::callbacks::writer {
  stan::callbacks::writer& inner_;

 public:
  std::vector<double> last;
  explicit last_row_writer(stan::callbacks::writer& inner) : inner_(inner) {}
  void operator()(const std::vector<std::string>& names) override { inner_(names); }
  void operator()(const std::vector<double>& state) override {
    last = state;
    inner_(state);
  }
  void operator()() override { inner_(); }
  void operator()(const std::string& message) override { inner_(message); }
};

// The gradient of the log density at the constrained values `row` (lp__
// first, as the optimizers write them), printed as `optimum_gradient = ...`,
// and when asked its Hessian, `optimum_hessian = ...`.
template <bool Jacobian>
void print_gradient(const stan::model::model_base& model,
                    const std::vector<double>& params_r,
                    const std::vector<double>& grad, bool with_hessian);

template <bool Jacobian>
void print_gradient(const stan::model::model_base& model,
                    const std::vector<double>& row, bool with_hessian) {
  const size_t n_unc = model.num_params_r();
  std::vector<std::string> names;
  model.constrained_param_names(names, false, false);
  if (row.size() < 1 + names.size())
    return;
  Eigen::VectorXd constrained = Eigen::Map<const Eigen::VectorXd>(
      row.data() + 1, static_cast<Eigen::Index>(names.size()));
  Eigen::VectorXd unconstrained(n_unc);
  std::stringstream msg;
  model.unconstrain_array(constrained, unconstrained, &msg);
  std::vector<double> params_r(unconstrained.data(),
                               unconstrained.data() + n_unc);
  std::vector<int> params_i;
  std::vector<double> grad;
  stan::model::log_prob_grad<true, Jacobian>(model, params_r, params_i, grad,
                                             &msg);
  print_gradient<Jacobian>(model, params_r, grad, with_hessian);
}

template <bool Jacobian>
void print_gradient(const stan::model::model_base& model,
                    const std::vector<double>& params_r,
                    const std::vector<double>& grad, bool with_hessian) {
  const size_t n_unc = model.num_params_r();
  std::vector<int> params_i;
  std::stringstream msg;
  std::ostringstream line;
  line.precision(17);
  line << "optimum_gradient = ";
  for (size_t k = 0; k < grad.size(); ++k)
    line << (k ? "," : "") << grad[k];
  std::cout << line.str() << std::endl;
  if (!with_hessian)
    return;
  // column j: (g(x + h e_j) - g(x - h e_j)) / 2h; error ~ h^2 |g'''| / 6 from the
  // step, ~ 1e-16 |g| / h from rounding
  const size_t k = n_unc;
  std::vector<double> hess(k * k, 0.0);
  for (size_t j = 0; j < k; ++j) {
    const double h = 1e-5 * std::max(1.0, std::fabs(params_r[j]));
    for (int s = -1; s <= 1; s += 2) {
      std::vector<double> x = params_r;
      x[j] += s * h;
      std::vector<double> g;
      stan::model::log_prob_grad<true, Jacobian>(model, x, params_i, g, &msg);
      for (size_t i = 0; i < k; ++i)
        hess[i * k + j] += s * g[i] / (2 * h);
    }
  }
  std::ostringstream hline;
  hline.precision(17);
  hline << "optimum_hessian = ";
  for (size_t i = 0; i < k; ++i)
    for (size_t j = 0; j < k; ++j)  // symmetrised
      hline << (i + j ? "," : "") << 0.5 * (hess[i * k + j] + hess[j * k + i]);
  std::cout << hline.str() << std::endl;
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

// The comment header CmdStan writes at the top of every CSV file; cmdstanpy
// parses `key = value` lines from it (method, num_samples, thin, ...).
void write_config(std::ostream& o, const std::string& method, const Args& a,
                  int chain_id, const std::vector<std::string>& method_lines) {
  o << "# stan_version_major = " << STAN_MAJOR << "\n"
    << "# stan_version_minor = " << STAN_MINOR << "\n"
    << "# stan_version_patch = " << STAN_PATCH << "\n"
    << "# model = " << get(a, "model_name", "model") << "\n"
    << "# start_datetime = " << now_utc() << "\n"
    << "# method = " << method << "\n"
    << "#   " << method << "\n";
  for (const auto& line : method_lines)
    o << "#     " << line << "\n";
  o << "# id = " << chain_id << "\n"
    << "# data\n"
    << "#   file = " << get(a, "data", "") << "\n"
    << "# init = " << get(a, "init", get(a, "init_radius", "2")) << "\n"
    << "# random\n"
    << "#   seed = " << get(a, "seed", "0") << "\n"
    << "# output\n"
    << "#   file = " << get(a, "output", "") << "\n"
    << "#   sig_figs = " << get(a, "sig_figs", "-1") << "\n"
    << "# num_threads = " << get(a, "chains", "1") << "\n"
    << "# engine_driver = bayesmix\n";
}

std::unique_ptr<std::ofstream> open_csv(const std::string& path, int sig_figs) {
  auto out = std::make_unique<std::ofstream>(path);
  if (!*out)
    throw std::invalid_argument("cannot write " + path);
  if (sig_figs > 0)
    out->precision(sig_figs);
  return out;
}

int run_sample(stan::model::model_base& model, const Args& a,
               stan::callbacks::logger& logger) {
  const int chains = static_cast<int>(num(a, "chains", 4));
  const unsigned int seed = static_cast<unsigned int>(num(a, "seed", 0));
  const int warmup = static_cast<int>(num(a, "num_warmup", 1000));
  const int samples = static_cast<int>(num(a, "num_samples", 1000));
  const int thin = static_cast<int>(num(a, "thin", 1));
  const bool save_warmup = num(a, "save_warmup", 0) != 0;
  const double delta = num(a, "adapt_delta", 0.8);
  const int max_depth = static_cast<int>(num(a, "max_depth", 10));
  const double stepsize = num(a, "stepsize", 1.0);
  const double init_radius = num(a, "init_radius", 2.0);
  const int refresh = static_cast<int>(num(a, "refresh", 100));
  const int sig_figs = static_cast<int>(num(a, "sig_figs", -1));
  const std::string metric = get(a, "metric", "diag_e");
  const std::string prefix = get(a, "output", "output");
  if (metric != "diag_e" && metric != "dense_e")
    throw std::invalid_argument("metric must be diag_e or dense_e, got "
                                + metric);

  std::vector<std::string> lines = {
      "num_samples = " + std::to_string(samples),
      "num_warmup = " + std::to_string(warmup),
      std::string("save_warmup = ") + (save_warmup ? "true" : "false"),
      "thin = " + std::to_string(thin),
      "adapt",
      "  engaged = true",
      "  gamma = 0.05",
      "  delta = " + get(a, "adapt_delta", "0.8"),
      "  kappa = 0.75",
      "  t0 = 10",
      "  init_buffer = 75",
      "  term_buffer = 50",
      "  window = 25",
      "algorithm = hmc",
      "  hmc",
      "    engine = nuts",
      "      nuts",
      "        max_depth = " + std::to_string(max_depth),
      "    metric = " + metric,
      "    stepsize = " + get(a, "stepsize", "1"),
      "    stepsize_jitter = 0",
      "num_chains = " + std::to_string(chains)};

  // One writer per chain: parallel chains must never share a stream.
  std::vector<stan::callbacks::unique_stream_writer<std::ofstream>> writers;
  std::vector<stan::callbacks::writer> init_writers(chains), diag_writers(chains);
  std::vector<std::shared_ptr<stan::io::var_context>> inits;
  for (int c = 0; c < chains; ++c) {
    auto out = open_csv(prefix + "_" + std::to_string(c + 1) + ".csv", sig_figs);
    write_config(*out, "sample", a, c + 1, lines);
    writers.emplace_back(std::move(out), "# ");
    inits.push_back(read_json(get(a, "init", "")));
  }
  const size_t n_unc = model.num_params_r();
  if (metric == "diag_e") {
    std::vector<std::shared_ptr<stan::io::var_context>> inv_metric;
    for (int c = 0; c < chains; ++c)
      inv_metric.push_back(std::make_shared<stan::io::array_var_context>(
          stan::services::util::create_unit_e_diag_inv_metric(n_unc)));
    stan::callbacks::interrupt interrupt;
    return stan::services::sample::hmc_nuts_diag_e_adapt(
        model, chains, inits, inv_metric, seed, 1, init_radius, warmup, samples,
        thin, save_warmup, refresh, stepsize, 0.0, max_depth, delta, 0.05, 0.75,
        10.0, 75, 50, 25, interrupt, logger, init_writers, writers,
        diag_writers);
  }
  std::vector<std::shared_ptr<stan::io::var_context>> inv_metric;
  for (int c = 0; c < chains; ++c)
    inv_metric.push_back(std::make_shared<stan::io::array_var_context>(
        stan::services::util::create_unit_e_dense_inv_metric(n_unc)));
  stan::callbacks::interrupt interrupt;
  return stan::services::sample::hmc_nuts_dense_e_adapt(
      model, chains, inits, inv_metric, seed, 1, init_radius, warmup, samples,
      thin, save_warmup, refresh, stepsize, 0.0, max_depth, delta, 0.05, 0.75,
      10.0, 75, 50, 25, interrupt, logger, init_writers, writers, diag_writers);
}

// The optimizers' settings, read once from the command line (CmdStan's
// defaults where absent).
struct optimizer_settings {
  unsigned int seed;
  double init_radius;
  int iter, refresh, history;
  double init_alpha, tol_obj, tol_rel_obj, tol_grad, tol_rel_grad, tol_param;

  explicit optimizer_settings(const Args& a)
      : seed(static_cast<unsigned int>(num(a, "seed", 0))),
        init_radius(num(a, "init_radius", 2.0)),
        iter(static_cast<int>(num(a, "iter", 2000))),
        refresh(static_cast<int>(num(a, "refresh", 100))),
        history(static_cast<int>(num(a, "history_size", 5))),
        init_alpha(num(a, "init_alpha", 0.001)),
        tol_obj(num(a, "tol_obj", 1e-12)),
        tol_rel_obj(num(a, "tol_rel_obj", 1e4)),
        tol_grad(num(a, "tol_grad", 1e-8)),
        tol_rel_grad(num(a, "tol_rel_grad", 1e7)),
        tol_param(num(a, "tol_param", 1e-8)) {}
};

// Where an L-BFGS run ended: the unconstrained point it wrote and the log
// density's gradient there (empty when the run stopped before either).
struct optimum {
  std::vector<double> x, grad;
};

bool fully_initialized(const stan::model::model_base& model,
                       const stan::io::var_context& init) {
  std::vector<std::string> names;
  model.get_param_names(names, false, false);
  for (const auto& name : names)
    if (!init.contains_r(name))
      return false;
  return true;
}

// Stan's lbfgs service (services/optimize/lbfgs.hpp) for a complete init
// file, step for step: the same optimizer, settings, random stream (the
// random context is drawn from as util::initialize draws from it), messages
// and CSV rows, so the optimum is bit-identical to CmdStan's. What it leaves
// out is util::initialize's log density and gradient at the start, which the
// optimizer then evaluates again; and it hands back the gradient at the
// optimum, which the optimizer holds, so the caller need not evaluate it a
// third time. On a dense reduced system (InstEval) each gradient is a
// 1,159-column Cholesky and its reverse pass: 3 of about 16 (issue 12).
template <bool Jacobian>
int lbfgs_from_inits(stan::model::model_base& model,
                     const stan::io::var_context& init,
                     const optimizer_settings& o,
                     stan::callbacks::logger& logger,
                     stan::callbacks::writer& writer, optimum& opt) {
  using codes = stan::services::error_codes;
  stan::rng_t rng = stan::services::util::create_rng(o.seed, 1);
  std::vector<int> disc;
  std::vector<double> cont;
  std::stringstream msg;
  try {
    stan::io::random_var_context random_context(model, rng, o.init_radius,
                                                o.init_radius == 0.0);
    stan::io::chained_var_context context(init, random_context);
    model.transform_inits(context, disc, cont, &msg);
  } catch (const std::exception& e) {
    if (msg.str().length() > 0)
      logger.info(msg);
    logger.error("Rejecting initial value:");
    logger.error(e.what());
    logger.error("Initialization failed.");
    return codes::CONFIG;
  }
  using Optimizer
      = stan::optimization::BFGSLineSearch<stan::model::model_base,
                                           stan::optimization::LBFGSUpdate<>,
                                           double, Eigen::Dynamic, Jacobian>;
  std::stringstream ss;
  std::unique_ptr<Optimizer> lbfgs;
  try {
    lbfgs = std::make_unique<Optimizer>(model, cont, disc, &ss);
  } catch (const std::exception& e) {
    if (ss.str().length() > 0)
      logger.info(ss);
    logger.error("Rejecting initial value:");
    logger.error("  Error evaluating the log probability at the initial value.");
    logger.error("Initialization failed.");
    return codes::CONFIG;
  }
  lbfgs->get_qnupdate().set_history_size(o.history);
  lbfgs->_ls_opts.alpha0 = o.init_alpha;
  lbfgs->_conv_opts.tolAbsF = o.tol_obj;
  lbfgs->_conv_opts.tolRelF = o.tol_rel_obj;
  lbfgs->_conv_opts.tolAbsGrad = o.tol_grad;
  lbfgs->_conv_opts.tolRelGrad = o.tol_rel_grad;
  lbfgs->_conv_opts.tolAbsX = o.tol_param;
  lbfgs->_conv_opts.maxIts = o.iter;
  double lp = lbfgs->logp();
  std::stringstream initial;
  initial << "Initial log joint probability = " << lp;
  logger.info(initial);
  std::vector<std::string> names{"lp__"};
  model.constrained_param_names(names, true, true);
  writer(names);
  int ret = 0;
  try {
    while (ret == 0) {
      ret = lbfgs->step();
      lp = lbfgs->logp();
      lbfgs->params_r(cont);
      if (o.refresh > 0
          && (ret != 0 || !lbfgs->note().empty() || lbfgs->iter_num() == 0
              || (lbfgs->iter_num() + 1) % o.refresh == 0)) {
        std::stringstream line;
        line << "    Iter " << std::setw(7) << lbfgs->iter_num()
             << "  log prob " << std::setprecision(6) << lp << "  ||grad|| "
             << lbfgs->curr_g().norm() << "  # evals " << lbfgs->grad_evals()
             << " " << lbfgs->note();
        logger.info(line);
      }
      if (ss.str().length() > 0) {
        logger.info(ss);
        ss.str("");
      }
    }
  } catch (const std::exception& e) {
    logger.error(e.what());
    return codes::SOFTWARE;
  }
  std::vector<double> values;
  std::stringstream wmsg;
  try {
    model.write_array(rng, cont, disc, values, true, true, &wmsg);
  } catch (const std::exception& e) {
    if (wmsg.str().length() > 0)
      logger.info(wmsg);
    logger.error(e.what());
    return codes::SOFTWARE;
  }
  if (wmsg.str().length() > 0)
    logger.info(wmsg);
  values.insert(values.begin(), lp);
  writer(values);
  opt.x = cont;
  lbfgs->grad(opt.grad);
  if (ret >= 0) {
    logger.info("Optimization terminated normally: ");
    logger.info("  " + lbfgs->get_code_string(ret));
    return codes::OK;
  }
  logger.info("Optimization terminated with error: ");
  logger.info("  " + lbfgs->get_code_string(ret));
  return codes::SOFTWARE;
}

template <bool Jacobian>
int optimize_with(stan::model::model_base& model, const Args& a,
                  stan::callbacks::logger& logger,
                  stan::callbacks::writer& writer, optimum& opt) {
  auto init = read_json(get(a, "init", ""));
  const std::string algorithm = get(a, "algorithm", "lbfgs");
  const optimizer_settings o(a);
  stan::callbacks::interrupt interrupt;
  stan::callbacks::writer init_writer;
  if (algorithm == "newton")
    return stan::services::optimize::newton<stan::model::model_base, Jacobian>(
        model, *init, o.seed, 1, o.init_radius, o.iter, false, interrupt, logger,
        init_writer, writer);
  if (algorithm == "bfgs")
    return stan::services::optimize::bfgs<stan::model::model_base, Jacobian>(
        model, *init, o.seed, 1, o.init_radius, o.init_alpha, o.tol_obj,
        o.tol_rel_obj, o.tol_grad, o.tol_rel_grad, o.tol_param, o.iter, false,
        o.refresh, interrupt, logger, init_writer, writer);
  if (algorithm != "lbfgs")
    throw std::invalid_argument("algorithm must be lbfgs, bfgs or newton, got "
                                + algorithm);
  if (fully_initialized(model, *init))
    return lbfgs_from_inits<Jacobian>(model, *init, o, logger, writer, opt);
  return stan::services::optimize::lbfgs<stan::model::model_base, Jacobian>(
      model, *init, o.seed, 1, o.init_radius, o.history, o.init_alpha, o.tol_obj,
      o.tol_rel_obj, o.tol_grad, o.tol_rel_grad, o.tol_param, o.iter, false,
      o.refresh, interrupt, logger, init_writer, writer);
}

int run_optimize(stan::model::model_base& model, const Args& a,
                 stan::callbacks::logger& logger) {
  const bool jacobian = num(a, "jacobian", 0) != 0;
  const std::string algorithm = get(a, "algorithm", "lbfgs");
  std::vector<std::string> lines = {
      "algorithm = " + algorithm,
      std::string("jacobian = ") + (jacobian ? "true" : "false"),
      "iter = " + get(a, "iter", "2000"), "save_iterations = false"};
  auto out = open_csv(get(a, "output", "optimize.csv"),
                      static_cast<int>(num(a, "sig_figs", 17)));
  write_config(*out, "optimize", a, 1, lines);
  stan::callbacks::unique_stream_writer<std::ofstream> csv(std::move(out),
                                                           "# ");
  last_row_writer writer(csv);
  optimum opt;
  const int code
      = jacobian ? optimize_with<true>(model, a, logger, writer, opt)
                 : optimize_with<false>(model, a, logger, writer, opt);
  if (!writer.last.empty()) {
    const bool hessian = num(a, "hessian", 0) != 0;
    try {
      if (!opt.grad.empty() && jacobian)
        print_gradient<true>(model, opt.x, opt.grad, hessian);
      else if (!opt.grad.empty())
        print_gradient<false>(model, opt.x, opt.grad, hessian);
      else if (jacobian)
        print_gradient<true>(model, writer.last, hessian);
      else
        print_gradient<false>(model, writer.last, hessian);
    } catch (const std::exception& e) {
      std::cout << "optimum_gradient unavailable: " << e.what() << std::endl;
    }
  }
  return code;
}

int run_laplace(stan::model::model_base& model, const Args& a,
                stan::callbacks::logger& logger) {
  const bool jacobian = num(a, "jacobian", 1) != 0;
  const int draws = static_cast<int>(num(a, "draws", 1000));
  const unsigned int seed = static_cast<unsigned int>(num(a, "seed", 0));
  const int refresh = static_cast<int>(num(a, "refresh", 100));
  // The mode arrives as constrained values; Stan wants it unconstrained.
  auto mode_ctx = read_json(get(a, "mode", ""));
  std::vector<int> params_i;
  std::vector<double> params_r;
  std::stringstream msg;
  model.transform_inits(*mode_ctx, params_i, params_r, &msg);
  Eigen::VectorXd theta_hat
      = Eigen::Map<Eigen::VectorXd>(params_r.data(), params_r.size());
  std::vector<std::string> lines = {
      "mode = " + get(a, "mode_csv", get(a, "mode", "")),
      std::string("jacobian = ") + (jacobian ? "true" : "false"),
      "draws = " + std::to_string(draws)};
  auto out = open_csv(get(a, "output", "laplace.csv"),
                      static_cast<int>(num(a, "sig_figs", -1)));
  write_config(*out, "laplace", a, 1, lines);
  stan::callbacks::unique_stream_writer<std::ofstream> writer(std::move(out),
                                                              "# ");
  stan::callbacks::interrupt interrupt;
  return jacobian ? stan::services::laplace_sample<true>(
                        model, theta_hat, draws, seed, refresh, interrupt,
                        logger, writer)
                  : stan::services::laplace_sample<false>(
                        model, theta_hat, draws, seed, refresh, interrupt,
                        logger, writer);
}

}  // namespace

int main(int argc, char* argv[]) {
#ifdef __GLIBC__
  // Keep large blocks on the heap: every gradient of a program with a dense reduced system
  // allocates and frees matrices of several MB, which glibc would otherwise map and unmap each
  // time, page faults and zeroing included (InstEval: 0.3 s of system time per fit).
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  if (argc < 2) {
    std::cerr << "usage: " << argv[0]
              << " sample|optimize|laplace|info key=value ...\n";
    return 64;
  }
  const std::string method = argv[1];
  Args a;
  for (int i = 2; i < argc; ++i) {
    std::string kv = argv[i];
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      std::cerr << "bad argument (want key=value): " << kv << "\n";
      return 64;
    }
    a[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  stan::callbacks::stream_logger logger(std::cout, std::cout, std::cout,
                                        std::cerr, std::cerr);
  try {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto data = read_json(get(a, "data", ""));
    const auto t1 = clock::now();
    stan::model::model_base& model = new_model(
        *data, static_cast<unsigned int>(num(a, "seed", 0)), &std::cout);
    const auto t2 = clock::now();
    data.reset();  // the model holds its own copy: do not keep two for the whole run
    // seconds spent reading the data file and constructing the model
    // (checks and transformed data), before the method runs
    std::cout << "data_read_seconds = "
              << std::chrono::duration<double>(t1 - t0).count()
              << "\nmodel_setup_seconds = "
              << std::chrono::duration<double>(t2 - t1).count() << std::endl;
    if (method == "info") {
      std::cout << "stan_version = " << STAN_MAJOR << "." << STAN_MINOR << "."
                << STAN_PATCH << "\nmodel = " << model.model_name() << "\n";
      return 0;
    }
    if (method == "sample")
      return run_sample(model, a, logger);
    if (method == "optimize")
      return run_optimize(model, a, logger);
    if (method == "laplace")
      return run_laplace(model, a, logger);
    std::cerr << "unknown method " << method
              << " (valid: sample, optimize, laplace, info)\n";
    return 64;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 70;
  }
}
