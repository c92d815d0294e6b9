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
//             tol_rel_grad= tol_param= history_size= init_alpha= ...
//   laplace:  data= mode= (JSON of constrained values) mode_csv= output=
//             draws= jacobian= seed= ...
#include <stan/callbacks/interrupt.hpp>
#include <stan/callbacks/stream_logger.hpp>
#include <stan/callbacks/unique_stream_writer.hpp>
#include <stan/callbacks/writer.hpp>
#include <stan/io/array_var_context.hpp>
#include <stan/io/empty_var_context.hpp>
#include <stan/io/json/json_data.hpp>
#include <stan/model/model_base.hpp>
#include <stan/services/optimize/bfgs.hpp>
#include <stan/services/optimize/laplace_sample.hpp>
#include <stan/services/optimize/lbfgs.hpp>
#include <stan/services/optimize/newton.hpp>
#include <stan/services/sample/hmc_nuts_dense_e_adapt.hpp>
#include <stan/services/sample/hmc_nuts_diag_e_adapt.hpp>
#include <stan/services/util/create_unit_e_dense_inv_metric.hpp>
#include <stan/services/util/create_unit_e_diag_inv_metric.hpp>
#include <stan/version.hpp>

#include <chrono>
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

std::shared_ptr<stan::io::var_context> read_json(const std::string& path) {
  if (path.empty())
    return std::make_shared<stan::io::empty_var_context>();
  std::ifstream in(path);
  if (!in)
    throw std::invalid_argument("cannot open JSON file " + path);
  return std::make_shared<stan::json::json_data>(in);
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

template <bool Jacobian>
int optimize_with(stan::model::model_base& model, const Args& a,
                  stan::callbacks::logger& logger,
                  stan::callbacks::writer& writer) {
  auto init = read_json(get(a, "init", ""));
  const std::string algorithm = get(a, "algorithm", "lbfgs");
  const unsigned int seed = static_cast<unsigned int>(num(a, "seed", 0));
  const double init_radius = num(a, "init_radius", 2.0);
  const int iter = static_cast<int>(num(a, "iter", 2000));
  const int refresh = static_cast<int>(num(a, "refresh", 100));
  stan::callbacks::interrupt interrupt;
  stan::callbacks::writer init_writer;
  if (algorithm == "newton")
    return stan::services::optimize::newton<stan::model::model_base, Jacobian>(
        model, *init, seed, 1, init_radius, iter, false, interrupt, logger,
        init_writer, writer);
  const double init_alpha = num(a, "init_alpha", 0.001);
  const double tol_obj = num(a, "tol_obj", 1e-12);
  const double tol_rel_obj = num(a, "tol_rel_obj", 1e4);
  const double tol_grad = num(a, "tol_grad", 1e-8);
  const double tol_rel_grad = num(a, "tol_rel_grad", 1e7);
  const double tol_param = num(a, "tol_param", 1e-8);
  if (algorithm == "bfgs")
    return stan::services::optimize::bfgs<stan::model::model_base, Jacobian>(
        model, *init, seed, 1, init_radius, init_alpha, tol_obj, tol_rel_obj,
        tol_grad, tol_rel_grad, tol_param, iter, false, refresh, interrupt,
        logger, init_writer, writer);
  if (algorithm != "lbfgs")
    throw std::invalid_argument("algorithm must be lbfgs, bfgs or newton, got "
                                + algorithm);
  const int history = static_cast<int>(num(a, "history_size", 5));
  return stan::services::optimize::lbfgs<stan::model::model_base, Jacobian>(
      model, *init, seed, 1, init_radius, history, init_alpha, tol_obj,
      tol_rel_obj, tol_grad, tol_rel_grad, tol_param, iter, false, refresh,
      interrupt, logger, init_writer, writer);
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
  stan::callbacks::unique_stream_writer<std::ofstream> writer(std::move(out),
                                                              "# ");
  return jacobian ? optimize_with<true>(model, a, logger, writer)
                  : optimize_with<false>(model, a, logger, writer);
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
    auto data = read_json(get(a, "data", ""));
    stan::model::model_base& model = new_model(
        *data, static_cast<unsigned int>(num(a, "seed", 0)), &std::cout);
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
