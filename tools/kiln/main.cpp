// kiln: the one binary. Subcommands are registered from tools/kiln/cmd_*.cpp.
#include <cstdio>
#include <exception>
#include <string>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: make, shrink, check, convert, run, serve and watch language models on the CPU", "kiln"};
  app.set_version_flag("--version", "kiln 0.1.0");
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  kiln run model.gguf -p \"Once upon a time\" -n 64\n"
      "  kiln run stories260K.bin --tokens 1 -n 64 --temp 0 --print-ids\n"
      "  kiln bench model.gguf -p 128 -n 64 -t 2 --json\n"
      "  kiln inspect model.gguf\n"
      "  kiln chat model.gguf --system \"Be brief.\"\n"
      "  kiln serve model.gguf --port 8080 --api-key-file key.txt\n"
      "  kiln quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M\n"
      "  kiln prune model.gguf -o half.gguf --calib text.txt --target-params 0.5\n"
      "  kiln export onnx model.gguf model.onnx\n"
      "  kiln eval perplexity model.gguf --text wiki.txt\n"
      "  kiln tokenize model.gguf \"Hello world\"\n"
      "  kiln data prepare --tokenizer model.gguf --out data/ corpus/\n"
      "  kiln tokenizer train --vocab-size 4096 --out tok/ corpus.txt\n"
      "  kiln train --data data/ --out run/ --dim 256 --layers 4 --steps 2000\n"
      "  kiln distill --teacher model.gguf --student student.json --data data/ --out run/\n\n"
      "Environment:\n"
      "  KILN_SIMD=scalar|avx2|avx512   use at most this SIMD path (default: the best the CPU has)\n"
      "  KILN_AMX=0                     do not use AMX tiles for prefill\n"
      "  KILN_LOAD=copy                 as --no-mmap: read weights into anonymous huge-page memory\n"
      "                                 instead of mapping the file (steadier decode where the page\n"
      "                                 cache reads slowly)\n\n"
      "Each subcommand has its own --help.");
  app.fallthrough(false);
  kiln::cli::register_run_command(app);
  kiln::cli::register_bench_command(app);
  kiln::cli::register_inspect_command(app);
  kiln::cli::register_eval_command(app);
  kiln::cli::register_quantize_command(app);
  kiln::cli::register_convert_command(app);
  kiln::cli::register_imatrix_command(app);
  kiln::cli::register_prune_command(app);
  kiln::cli::register_tokenize_commands(app);
  kiln::cli::register_tokenizer_commands(app);
  kiln::cli::register_chat_command(app);
  kiln::cli::register_serve_command(app);
  kiln::cli::register_data_command(app);
  kiln::cli::register_train_command(app);
  kiln::cli::register_distill_command(app);
  kiln::cli::register_export_command(app);
  kiln::cli::register_embed_command(app);
  kiln::cli::register_synth_command(app);
  // CLI11 reports an unknown subcommand as "a subcommand is required"; name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "kiln: unknown subcommand '%s' (expected one of: %s; see kiln --help)\n", argv[1],
                   names.c_str());
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints help (exit 0) or a usage error (exit non-zero).
    return app.exit(e);
  } catch (const kiln::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kiln: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kiln: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
