#pragma once
// The lexer of kiln's Jinja subset: splits a template into text and tags, applies Jinja2's
// whitespace rules ({%- -%}, {{- -}}, {%+ and the trim_blocks / lstrip_blocks options, which
// Hugging Face renders chat templates with), and cuts the inside of tags into tokens.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::jinja {

enum class TokenKind {
  Text,        // template data between tags (whitespace rules already applied), raw blocks too
  VarBegin,    // {{
  VarEnd,      // }}
  BlockBegin,  // {%
  BlockEnd,    // %}
  Name,
  String,  // text holds the unescaped value
  Int,
  Float,
  Op,  // text holds the operator: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } . , : |
  Eof,
};

struct Token {
  TokenKind kind = TokenKind::Eof;
  std::string text;
  std::int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
  int col = 1;
};

struct LexOptions {
  bool trim_blocks = true;             // drop the first newline after a block tag or comment
  bool lstrip_blocks = true;           // drop spaces and tabs before a block tag or comment on its line
  bool keep_trailing_newline = false;  // Jinja2 drops one newline at the end of the template
};

// Tokens of `source`, ending with one Eof token. Throws kiln::Error "line L:C: ..." on
// unterminated tags, strings, comments or raw blocks and on characters no token starts with.
std::vector<Token> tokenize(std::string_view source, const LexOptions& options);

}  // namespace kiln::jinja
