#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace kiln {
namespace {

// The expressions as the models' own tokenizer.json files write them (llama.cpp rewrites a few
// for std::regex; PCRE2 takes the originals, case-insensitive groups and \p{Lu} included).
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2 without its final "\s+": what it would match is left between matches and becomes a
// piece of its own anyway, so both forms cut text the same way (llama.cpp uses this form).
constexpr const char* kGpt2Short = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr const char* kTekken =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kGpt4o =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)";
// DeepSeek's CJK ranges, shared by its LLM and Coder vocabularies.
constexpr const char* kDeepseekCjk = R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";

bool any_of(std::string_view name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (name == n) return true;
  }
  return false;
}

}  // namespace

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

const char* const kKnownPretokenizers =
    "llama-bpe, gpt-2, qwen2, smollm, starcoder, tekken, gpt-4o, deepseek-llm, deepseek-coder, deepseek-v3, falcon, "
    "bloom, viking, default and their aliases";

std::optional<PretokenizerSpec> find_pretokenizer_spec(std::string_view name) {
  // Names and groupings as llama.cpp's llama-vocab.cpp reads tokenizer.ggml.pre.
  if (any_of(name, {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})) {
    return PretokenizerSpec{{kLlama3}, /*ignore_merges=*/true, /*add_bos=*/true};
  }
  if (any_of(name, {"dbrx", "smaug-bpe", "chatglm-bpe", "glm4"})) return PretokenizerSpec{{kLlama3}};
  if (any_of(name, {"gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "jina-v1-en",
                    "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "exaone4", "gigachat", "mellum", "a.x-4.0",
                    "trillion", "granite-docling"})) {
    return PretokenizerSpec{{kGpt2Pattern}};
  }
  if (any_of(name, {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "kormo", "hunyuan", "grok-2"})) {
    return PretokenizerSpec{{kQwen2}};
  }
  if (any_of(name, {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})) {
    return PretokenizerSpec{{R"(\p{N})", kGpt2Short}};
  }
  if (name == "tekken") return PretokenizerSpec{{kTekken}, /*ignore_merges=*/true, /*add_bos=*/true};
  if (any_of(name, {"gpt-4o", "llama4"})) return PretokenizerSpec{{kGpt4o}};
  if (name == "deepseek-llm") {
    // Cased letters (Unicode's L&), then ASCII and full-width punctuation, as DeepSeek's
    // tokenizer.json lists them; written as code points because an editor's normalization
    // would silently turn some of them (U+1FDB, U+2126, U+212A) into other characters.
    return PretokenizerSpec{
        {"[\r\n]",
         "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
         "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"
         "\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"
         "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
         "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
         "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"
         "\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}"
         "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
         "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"
         "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"
         "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"
         "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"
         "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
         "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
         "\\x{1E900}-\\x{1E943}]+",
         "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$",
         kDeepseekCjk, R"(\p{N}+)"}};
  }
  if (name == "deepseek-coder") {
    return PretokenizerSpec{{"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kDeepseekCjk, R"(\p{N})"}};
  }
  if (name == "deepseek-v3") {
    return PretokenizerSpec{{R"(\p{N}{1,3})", R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)",
             R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}};
  }
  if (name == "falcon") return PretokenizerSpec{{R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Short, "[0-9][0-9][0-9]"}};
  if (any_of(name, {"poro-chat", "bloom", "gpt3-finnish"})) return PretokenizerSpec{{kBloom}};
  if (name == "viking") return PretokenizerSpec{{kBloom, R"(\p{N})"}};
  if (name.empty() || name == "default") {
    return PretokenizerSpec{{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Short, R"(\p{N}+)", "[0-9][0-9][0-9]"}};
  }
  return std::nullopt;
}

std::string pretokenizer_name_for(const std::vector<std::string>& patterns, bool ignore_merges) {
  // One name per distinct spec, in the order llama.cpp's converter prefers them.
  static constexpr const char* kNames[] = {"llama-bpe", "dbrx",   "gpt-2",        "qwen2",          "smollm",
                                           "tekken",    "gpt-4o", "deepseek-llm", "deepseek-coder", "deepseek-v3",
                                           "falcon",    "bloom",  "viking"};
  auto canonical = [](const std::string& p) { return p == kGpt2Short ? std::string(kGpt2Pattern) : p; };
  std::vector<std::string> wanted;
  for (const std::string& p : patterns) wanted.push_back(canonical(p));
  for (const char* name : kNames) {
    const std::optional<PretokenizerSpec> spec = find_pretokenizer_spec(name);
    if (!spec || spec->ignore_merges != ignore_merges || spec->patterns.size() != wanted.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < wanted.size() && same; ++i) same = canonical(spec->patterns[i]) == wanted[i];
    if (same) return name;
  }
  return "";
}

struct Pretokenizer::Regex {
  pcre2_code* code = nullptr;
  std::string pattern;
  ~Regex() { pcre2_code_free(code); }
};

namespace {

// Per-thread matching scratch: one match-data block (only the whole match is read) and a JIT
// stack big enough for long runs of one character class.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchScratch() {
    KILN_CHECK(data != nullptr && context != nullptr, "pre-tokenizer: out of memory for PCRE2 match data");
    if (jit_stack != nullptr) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_data_free(data);
  }
};

MatchScratch& match_scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? fmt::format("PCRE2 error {}", code) : std::string(reinterpret_cast<const char*>(buffer));
}

}  // namespace

Pretokenizer::Pretokenizer(const std::vector<std::string>& patterns) {
  for (const std::string& pattern : patterns) {
    auto regex = std::make_unique<Regex>();
    regex->pattern = pattern;
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    // UCP makes \s, \d, \w and POSIX classes Unicode-aware, as in the reference tokenizers;
    // MATCH_INVALID_UTF lets text with stray bytes through (they just never match).
    regex->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &error_offset, nullptr);
    KILN_CHECK(regex->code != nullptr, "pre-tokenizer pattern \"{}\": {} at offset {}", pattern, pcre2_message(error),
               error_offset);
    // Without JIT support PCRE2's interpreter still works, only slower.
    pcre2_jit_compile(regex->code, PCRE2_JIT_COMPLETE);
    regexes_.push_back(std::move(regex));
  }
}

Pretokenizer::~Pretokenizer() = default;
Pretokenizer::Pretokenizer(Pretokenizer&&) noexcept = default;
Pretokenizer& Pretokenizer::operator=(Pretokenizer&&) noexcept = default;

void Pretokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  pieces.clear();
  if (text.empty()) return;
  pieces.push_back(text);
  MatchScratch& scratch = match_scratch();
  thread_local std::vector<std::string_view> next;
  for (const auto& regex : regexes_) {
    next.clear();
    for (std::string_view piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      std::size_t begin = 0;  // start of the text not yet emitted
      std::size_t at = 0;     // where the next search starts
      while (at < piece.size()) {
        const int rc = pcre2_match(regex->code, subject, piece.size(), at, 0, scratch.data, scratch.context);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        KILN_CHECK(rc >= 0, "pre-tokenizer pattern \"{}\" failed on a {}-byte piece: {}", regex->pattern, piece.size(),
                   pcre2_message(rc));
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
        const std::size_t match_begin = ovector[0], match_end = ovector[1];
        if (match_begin > begin) next.push_back(piece.substr(begin, match_begin - begin));
        if (match_end > match_begin) {
          next.push_back(piece.substr(match_begin, match_end - match_begin));
          at = match_end;
        } else {
          // An empty match (a look-ahead) only marks a cut; search again one character on.
          at = match_end +
               utf8::char_length_from_lead(static_cast<unsigned char>(piece[match_end]), piece.size() - match_end);
        }
        begin = match_end;
      }
      if (begin < piece.size()) next.push_back(piece.substr(begin));
    }
    pieces.swap(next);
  }
}

}  // namespace kiln
