// ChatTemplate on the chat templates of the common model families, written here as their
// tokenizer_config.json publishes them (the escapes are those of the JSON), each rendered for a
// system + user + assistant + user conversation with and without add_generation_prompt and
// compared with the exact expected text (derived by reading the template), then with Jinja2
// itself under Hugging Face's settings (tests/chat/chat_template_oracle.py) when
// python3-jinja2 is installed. Also: tools, built-ins, the choice of a built-in, GGUF loading.
#include "chat/chat_template.h"

#include <gtest/gtest.h>

#include <iostream>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/gguf_file.h"
#include "test_support.h"

namespace kiln {
namespace {

using nlohmann::ordered_json;

// ---- the published templates ------------------------------------------------------------------

// meta-llama/Llama-2-7b-chat-hf
const std::string kLlama2Chat =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_mess"
    "age = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message"
    " = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (lo"
    "op.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/"
    "assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content"
    " = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set conte"
    "nt = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' "
    "+ content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.stri"
    "p() + ' ' + eos_token }}{% endif %}{% endfor %}";

// meta-llama/Meta-Llama-3-8B-Instruct
const std::string kLlama3Instruct =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_he"
    "ader_id|>' + message['role'] + '<|end_header_id|>\n"
    "\n"
    "'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_toke"
    "n + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_head"
    "er_id|>assistant<|end_header_id|>\n"
    "\n"
    "' }}{% endif %}";

// meta-llama/Meta-Llama-3.1-8B-Instruct (tools, date_string)
const std::string kLlama31Instruct =
    "{{- bos_token }}\n"
    "{%- if custom_tools is defined %}\n"
    "    {%- set tools = custom_tools %}\n"
    "{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}\n"
    "    {%- set tools_in_user_message = true %}\n"
    "{%- endif %}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- set date_string = \"26 Jul 2024\" %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- This block extracts the system message, so we can slot it into the right place. #}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- System message + builtin tools #}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{%- if builtin_tools is defined or tools is not none %}\n"
    "    {{- \"Environment: ipython\\n\" }}\n"
    "{%- endif %}\n"
    "{%- if builtin_tools is defined %}\n"
    "    {{- \"Tools: \" + builtin_tools | reject('equalto', 'code_interpreter') | join(\", \") + \"\\n\\n\"}"
    "}\n"
    "{%- endif %}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{%- if tools is not none and not tools_in_user_message %}\n"
    "    {{- \"You have access to the following functions. To call a function, please respond with JSO"
    "N for a function call.\" }}\n"
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name"
    " and its value}.' }}\n"
    "    {{- \"Do not use variables.\\n\\n\" }}\n"
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    "        {{- \"\\n\\n\" }}\n"
    "    {%- endfor %}\n"
    "{%- endif %}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "\n"
    "{#- Custom tools are passed in a user message with some extra guidance #}\n"
    "{%- if tools_in_user_message and not tools is none %}\n"
    "    {#- Extract the first user message so we can plug it in here #}\n"
    "    {%- if messages | length != 0 %}\n"
    "        {%- set first_user_message = messages[0]['content']|trim %}\n"
    "        {%- set messages = messages[1:] %}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Cannot put tools in the first user message when there's no first us"
    "er message!\") }}\n"
    "{%- endif %}\n"
    "    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n"
    "    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n"
    "    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n"
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name"
    " and its value}.' }}\n"
    "    {{- \"Do not use variables.\\n\\n\" }}\n"
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    "        {{- \"\\n\\n\" }}\n"
    "    {%- endfor %}\n"
    "    {{- first_user_message + \"<|eot_id|>\"}}\n"
    "{%- endif %}\n"
    "\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) "
    "%}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'"
    "] | trim + '<|eot_id|>' }}\n"
    "    {%- elif 'tool_calls' in message %}\n"
    "        {%- if not message.tool_calls|length == 1 %}\n"
    "            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n"
    "        {%- endif %}\n"
    "        {%- set tool_call = message.tool_calls[0].function %}\n"
    "        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}\n"
    "            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "            {{- \"<|python_tag|>\" + tool_call.name + \".call(\" }}\n"
    "            {%- for arg_name, arg_val in tool_call.arguments | items %}\n"
    "                {{- arg_name + '=\"' + arg_val + '\"' }}\n"
    "                {%- if not loop.last %}\n"
    "                    {{- \", \" }}\n"
    "                {%- endif %}\n"
    "                {%- endfor %}\n"
    "            {{- \")\" }}\n"
    "        {%- else  %}\n"
    "            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "            {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n"
    "            {{- '\"parameters\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- \"}\" }}\n"
    "        {%- endif %}\n"
    "        {%- if builtin_tools is defined %}\n"
    "            {#- This means we're in ipython mode #}\n"
    "            {{- \"<|eom_id|>\" }}\n"
    "        {%- else %}\n"
    "            {{- \"<|eot_id|>\" }}\n"
    "        {%- endif %}\n"
    "    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n"
    "        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n"
    "        {%- if message.content is mapping or message.content is iterable %}\n"
    "            {{- message.content | tojson }}\n"
    "        {%- else %}\n"
    "            {{- message.content }}\n"
    "        {%- endif %}\n"
    "        {{- \"<|eot_id|>\" }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n";

// mistralai/Mistral-7B-Instruct-v0.1 (its current template, mistral_common's v1 format)
const std::string kMistralV01 =
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must alternat"
    "e user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n"
    "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] + eos_token}}\n"
    "    {%- else %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported, with the exception of "
    "an initial optional system message!') }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

// mistralai v3-tokenizer template (Mistral-7B-Instruct-v0.3 family; text as llama.cpp's tests record it for Mistral-Large-Instruct-2407)
const std::string kMistralV3 =
    "{%- if messages[0][\"role\"] == \"system\" %}\n"
    "    {%- set system_message = messages[0][\"content\"] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n"
    "\n"
    "{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}"
    "\n"
    "{%- set ns = namespace() %}\n"
    "{%- set ns.index = 0 %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls "
    "is defined and message.tool_calls is not none)) %}\n"
    "        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n"
    "            {{- raise_exception(\"After the optional system message, conversation roles must alte"
    "rnate user/assistant/user/assistant/...\") }}\n"
    "        {%- endif %}\n"
    "        {%- set ns.index = ns.index + 1 %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS] [\" }}\n"
    "            {%- for tool in tools %}\n"
    "                {%- set tool = tool.function %}\n"
    "                {{- '{\"type\": \"function\", \"function\": {' }}\n"
    "                {%- for key, val in tool.items() if key != \"return\" %}\n"
    "                    {%- if val is string %}\n"
    "                        {{- '\"' + key + '\": \"' + val + '\"' }}\n"
    "                    {%- else %}\n"
    "                        {{- '\"' + key + '\": ' + val|tojson }}\n"
    "                    {%- endif %}\n"
    "                    {%- if not loop.last %}\n"
    "                        {{- \", \" }}\n"
    "                    {%- endif %}\n"
    "                {%- endfor %}\n"
    "                {{- \"}}\" }}\n"
    "                {%- if not loop.last %}\n"
    "                    {{- \", \" }}\n"
    "                {%- else %}\n"
    "                    {{- \"]\" }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
    "            {%- endif %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    "            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- else %}\n"
    "            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- endif %}\n"
    "    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n"
    "        {{- \"[TOOL_CALLS] [\" }}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- set out = tool_call.function|tojson %}\n"
    "            {{- out[:-1] }}\n"
    "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
    "                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!"
    "\") }}\n"
    "            {%- endif %}\n"
    "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
    "            {%- if not loop.last %}\n"
    "                {{- \", \" }}\n"
    "            {%- else %}\n"
    "                {{- \"]\" + eos_token }}\n"
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    "    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- \" \" + message[\"content\"]|trim + eos_token}}\n"
    "    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n"
    "        {%- if message.content is defined and message.content.content is defined %}\n"
    "            {%- set content = message.content.content %}\n"
    "        {%- else %}\n"
    "            {%- set content = message.content %}\n"
    "        {%- endif %}\n"
    "        {{- '[TOOL_RESULTS] {\"content\": ' + content|string + \", \" }}\n"
    "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
    "            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }"
    "}\n"
    "        {%- endif %}\n"
    "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of "
    "an initial optional system message!\") }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

// Qwen/Qwen2.5-7B-Instruct (ChatML with tools)
const std::string kQwen25Instruct =
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou"
    " are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and argum"
    "ents within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"argume"
    "nts\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assis"
    "tant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message"
    ".role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n";

// google/gemma-2-9b-it
const std::string kGemma2It =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not suppo"
    "rted') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.inde"
    "x0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assista"
    "nt/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %"
    "}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n"
    "' + message['content'] | trim + '<end_of_turn>\n"
    "' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n"
    "'}}{% endif %}";

// google/gemma-3-1b-it
const std::string kGemma3It =
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n";

// microsoft/Phi-3-mini-4k-instruct
const std::string kPhi3Mini =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% elif message['role'] == 'user' %}{{'<|user|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n"
    "' }}{% else %}{{ eos_token }}{% endif %}";

// HuggingFaceH4/zephyr-7b-beta
const std::string kZephyrBeta =
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n"
    "' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n"
    "' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n"
    "'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n"
    "{% endif %}\n"
    "{% endfor %}";
// ---- conversations ----------------------------------------------------------------------------

const std::vector<ChatMessage> kChat = {
    {"system", "You are a helpful assistant.", {}, {}, {}},
    {"user", "Hello!", {}, {}, {}},
    {"assistant", "Hi there. How can I help?", {}, {}, {}},
    {"user", "What is 2+2?", {}, {}, {}},
};

const ordered_json kWeatherTool = ordered_json::parse(R"({
  "type": "function",
  "function": {
    "name": "get_weather",
    "description": "Get the weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
  }
})");

const std::string kWeatherToolJson =
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}";

std::vector<ChatMessage> tool_chat() {
  ChatMessage call{"assistant", "", {}, {}, {}};
  call.tool_calls = ordered_json::parse(
      R"([{"id": "abc123def", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}])");
  ChatMessage result{"tool", "22 C", {}, std::string("abc123def"), {}};
  return {{"system", "You are a helpful assistant.", {}, {}, {}},
          {"user", "What's the weather in Paris?", {}, {}, {}},
          call,
          result};
}

struct Family {
  const char* name;
  const std::string* source;
  const char* bos;
  const char* eos;
  std::string expected_without_prompt;
  std::string expected_with_prompt;  // "" with expected_error set: the template raises
  std::string expected_error;
};

const std::vector<Family>& families() {
  static const std::vector<Family> f = {
      {"llama2-chat", &kLlama2Chat, "<s>", "</s>",
       "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi there. How can I help? </s>"
       "<s>[INST] What is 2+2? [/INST]",
       "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi there. How can I help? </s>"
       "<s>[INST] What is 2+2? [/INST]",
       ""},
      {"llama3-instruct", &kLlama3Instruct, "<|begin_of_text|>", "<|eot_id|>",
       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\n",
       ""},
      {"llama3.1-instruct", &kLlama31Instruct, "<|begin_of_text|>", "<|eot_id|>",
       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
       "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
       "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\n",
       ""},
      {"mistral-v0.1", &kMistralV01, "<s>", "</s>",
       "<s> [INST] You are a helpful assistant.\n\nHello! [/INST] Hi there. How can I help?</s> [INST] What is 2+2? [/INST]",
       "<s> [INST] You are a helpful assistant.\n\nHello! [/INST] Hi there. How can I help?</s> [INST] What is 2+2? [/INST]",
       ""},
      {"mistral-v0.3", &kMistralV3, "<s>", "</s>",
       "<s>[INST] Hello![/INST] Hi there. How can I help?</s>[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST]",
       "<s>[INST] Hello![/INST] Hi there. How can I help?</s>[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST]",
       ""},
      {"qwen2.5-instruct", &kQwen25Instruct, "", "<|im_end|>",
       "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
       "<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
       "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
       "<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
       "<|im_start|>assistant\n",
       ""},
      {"gemma2-it", &kGemma2It, "<bos>", "<eos>", "", "", "System role not supported"},
      {"phi3-mini", &kPhi3Mini, "<s>", "<|endoftext|>",
       "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\nHi there. How can I "
       "help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|endoftext|>",
       "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\nHi there. How can I "
       "help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
       ""},
      {"zephyr-beta", &kZephyrBeta, "<s>", "</s>",
       "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello!</s>\n<|assistant|>\nHi there. How can I help?</s>\n"
       "<|user|>\nWhat is 2+2?</s>\n",
       "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello!</s>\n<|assistant|>\nHi there. How can I help?</s>\n"
       "<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n",
       ""},
      {"gemma3-it", &kGemma3It, "<bos>", "<eos>",
       "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n<start_of_turn>model\nHi there. "
       "How can I help?<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n",
       "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n<start_of_turn>model\nHi there. "
       "How can I help?<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
       ""},
  };
  return f;
}

std::string render_or_error(const ChatTemplate& t, std::span<const ChatMessage> chat, bool gen,
                            const ordered_json& extra = ordered_json::object()) {
  try {
    return t.render(chat, gen, extra);
  } catch (const Error& e) {
    return std::string("ERROR: ") + e.what();
  }
}

TEST(ChatTemplateFamilies, RenderTheConversationExactly) {
  for (const Family& fam : families()) {
    SCOPED_TRACE(fam.name);
    const ChatTemplate t(*fam.source, fam.bos, fam.eos);
    for (const bool gen : {false, true}) {
      SCOPED_TRACE(gen ? "with add_generation_prompt" : "without add_generation_prompt");
      if (!fam.expected_error.empty()) {
        const std::string out = render_or_error(t, kChat, gen);
        EXPECT_NE(out.find("raise_exception: " + fam.expected_error), std::string::npos) << out;
        continue;
      }
      EXPECT_EQ(render_or_error(t, kChat, gen), gen ? fam.expected_with_prompt : fam.expected_without_prompt);
    }
  }
}

TEST(ChatTemplateFamilies, GemmaRendersWithoutSystemRole) {
  const ChatTemplate t(kGemma2It, "<bos>", "<eos>");
  const std::vector<ChatMessage> chat(kChat.begin() + 1, kChat.end());
  EXPECT_EQ(t.render(chat, true),
            "<bos><start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n"
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n");
}

TEST(ChatTemplateFamilies, GemmaThreeTakesContentPartsAndTheBuiltinIsIt) {
  // Content as a list of parts (text and image) as multimodal clients send it (given as the
  // messages variable itself); the built-in
  // "gemma3" is the published template, guessed from the architecture (its vocabulary has
  // gemma2's <start_of_turn> too).
  const ChatTemplate t(kGemma3It, "<bos>", "<eos>");
  const ordered_json messages = ordered_json::array(
      {{{"role", "system"}, {"content", ordered_json::array({{{"type", "text"}, {"text", "Be brief."}}})}},
       {{"role", "user"},
        {"content", ordered_json::array({{{"type", "image"}}, {{"type", "text"}, {"text", " What is this? "}}})}}});
  EXPECT_EQ(t.render({}, true, ordered_json{{"messages", messages}}),
            "<bos><start_of_turn>user\nBe brief.\n\n<start_of_image>What is this?<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(ChatTemplate::builtin_source("gemma3"), kGemma3It);
  ChatTemplateHints h;
  h.architecture = "gemma3";
  h.tokens_present = {"<start_of_turn>"};
  EXPECT_EQ(ChatTemplate::guess_builtin(h), "gemma3");
}

TEST(ChatTemplateFamilies, RolesMustAlternateWhereTheTemplateSaysSo) {
  const std::vector<ChatMessage> chat = {{"user", "a", {}, {}, {}}, {"user", "b", {}, {}, {}}};
  for (const std::string* src : {&kLlama2Chat, &kMistralV01, &kMistralV3, &kGemma2It, &kGemma3It}) {
    const std::string out = render_or_error(ChatTemplate(*src, "<s>", "</s>"), chat, true);
    EXPECT_NE(out.find("roles must alternate"), std::string::npos) << out;
    EXPECT_EQ(out.find('\n'), std::string::npos) << out;
  }
}

const std::string kLlama31ToolPrompt =
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function "
    "call with its proper arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function "
    "name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n"
    "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n"
    "        \"description\": \"Get the weather\",\n        \"parameters\": {\n            \"type\": \"object\",\n"
    "            \"properties\": {\n                \"city\": {\n                    \"type\": \"string\"\n"
    "                }\n            },\n            \"required\": [\n                \"city\"\n            ]\n"
    "        }\n    }\n}\n\nWhat's the weather in Paris?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}"
    "<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"22 C\"<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n";

TEST(ChatTemplateTools, Llama31PutsToolsInTheFirstUserMessage) {
  const ChatTemplate t(kLlama31Instruct, "<|begin_of_text|>", "<|eot_id|>");
  const std::vector<ChatMessage> chat = tool_chat();
  EXPECT_EQ(t.render(chat, true, {{"tools", ordered_json::array({kWeatherTool})}}), kLlama31ToolPrompt);
}

TEST(ChatTemplateTools, Llama31TakesTheDateFromItsVariables) {
  const ChatTemplate t(kLlama31Instruct, "<|begin_of_text|>", "<|eot_id|>");
  const std::string out = t.render(kChat, true, {{"date_string", "01 Jan 2025"}});
  EXPECT_NE(out.find("Today Date: 01 Jan 2025\n\n"), std::string::npos) << out;
}

TEST(ChatTemplateTools, QwenListsToolsInTheSystemTurn) {
  const ChatTemplate t(kQwen25Instruct, "", "<|im_end|>");
  const std::vector<ChatMessage> chat = tool_chat();
  EXPECT_EQ(t.render(chat, true, {{"tools", ordered_json::array({kWeatherTool})}}),
            "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist "
            "with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
                kWeatherToolJson +
                "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
                "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                "<args-json-object>}\n</tool_call><|im_end|>\n"
                "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n"
                "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n22 C\n</tool_response><|im_end|>\n"
                "<|im_start|>assistant\n");
}

TEST(ChatTemplateTools, MistralV3ListsToolsBeforeTheLastUserTurn) {
  const ChatTemplate t(kMistralV3, "<s>", "</s>");
  const std::vector<ChatMessage> chat = tool_chat();
  EXPECT_EQ(t.render(chat, false, {{"tools", ordered_json::array({kWeatherTool})}}),
            "<s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
            "\"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
            "\"string\"}}, \"required\": [\"city\"]}}}][/AVAILABLE_TOOLS][INST] What's the weather in Paris?[/INST]"
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abc123def\"}]</s>"
            "[TOOL_RESULTS] {\"content\": 22 C, \"call_id\": \"abc123def\"}[/TOOL_RESULTS]");
}

TEST(ChatTemplateMessages, OptionalFieldsAppearOnlyWhenSet) {
  const ChatTemplate t(
      "{% for m in messages %}{{ m.role }}:{{ 'name' in m }}{{ 'tool_call_id' in m }}{{ 'tool_calls' in m }}"
      "{{ m.name }}{{ m.tool_call_id }};{% endfor %}",
      "", "");
  std::vector<ChatMessage> chat = {{"user", "x", {}, {}, {}}, {"tool", "y", std::string("fn"), std::string("id1"), {}}};
  EXPECT_EQ(t.render(chat, false), "user:FalseFalseFalse;tool:TrueTrueFalsefnid1;");
}

// ---- built-ins and the choice of one ------------------------------------------------------------

TEST(ChatTemplateBuiltins, PublishedOnesAreTheModelsTemplatesByteForByte) {
  EXPECT_EQ(ChatTemplate::builtin_source("llama2"), kLlama2Chat);
  EXPECT_EQ(ChatTemplate::builtin_source("llama3"), kLlama3Instruct);
  EXPECT_EQ(ChatTemplate::builtin_source("mistral-v1"), kMistralV01);
  EXPECT_EQ(ChatTemplate::builtin_source("mistral-v3"), kMistralV3);
  EXPECT_EQ(ChatTemplate::builtin_source("gemma"), kGemma2It);
  EXPECT_EQ(ChatTemplate::builtin_source("phi3"), kPhi3Mini);
  EXPECT_EQ(ChatTemplate::builtin_source("zephyr"), kZephyrBeta);
}

TEST(ChatTemplateBuiltins, OwnFormsRender) {
  std::vector<ChatMessage> chat(kChat.begin(), kChat.end());
  EXPECT_EQ(ChatTemplate::builtin("chatml", "", "").render(chat, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
            "<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(ChatTemplate::builtin("alpaca", "<s>", "</s>").render(chat, true),
            "You are a helpful assistant.\n\n### Instruction:\nHello!\n\n### Response:\nHi there. How can I help?</s>\n\n"
            "### Instruction:\nWhat is 2+2?\n\n### Response:\n");
  EXPECT_EQ(ChatTemplate::builtin("mistral-v7", "<s>", "</s>").render(chat, true),
            "<s>[SYSTEM_PROMPT] You are a helpful assistant.[/SYSTEM_PROMPT][INST] Hello![/INST] Hi there. How can I "
            "help?</s>[INST] What is 2+2?[/INST]");
  for (std::string_view name : ChatTemplate::builtin_names()) {
    SCOPED_TRACE(name);
    const ChatTemplate t = ChatTemplate::builtin(name, "<s>", "</s>");
    EXPECT_EQ(t.name(), name);
    std::vector<ChatMessage> no_system(kChat.begin() + 1, kChat.end());
    EXPECT_NE(t.render(no_system, true).find("What is 2+2?"), std::string::npos);
  }
}

TEST(ChatTemplateBuiltins, UnknownNameIsAnError) {
  try {
    ChatTemplate::builtin("nope", "", "");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown chat template 'nope' (built-in templates: llama2"), std::string::npos)
        << e.what();
  }
}

TEST(ChatTemplateBuiltins, GuessFollowsTokensArchitectureAndName) {
  const auto guess = [](std::vector<std::string> tokens, std::string arch = "", std::string name = "",
                        std::string model = "") {
    ChatTemplateHints h;
    h.tokens_present = std::move(tokens);
    h.architecture = std::move(arch);
    h.model_name = std::move(name);
    h.tokenizer_model = std::move(model);
    return std::string(ChatTemplate::guess_builtin(h));
  };
  EXPECT_EQ(guess({"<|im_start|>"}, "llama"), "chatml");
  EXPECT_EQ(guess({"<|start_header_id|>", "<|eot_id|>"}, "llama"), "llama3");
  EXPECT_EQ(guess({"<start_of_turn>"}), "gemma");
  EXPECT_EQ(guess({"<|end|>", "<|assistant|>"}), "phi3");
  EXPECT_EQ(guess({"[INST]", "[SYSTEM_PROMPT]"}), "mistral-v7");
  EXPECT_EQ(guess({"[INST]", "[AVAILABLE_TOOLS]"}), "mistral-v3");
  EXPECT_EQ(guess({}, "qwen2"), "chatml");
  EXPECT_EQ(guess({}, "gemma2"), "gemma");
  EXPECT_EQ(guess({"<start_of_turn>"}, "gemma3"), "gemma3");
  EXPECT_EQ(guess({}, "phi3"), "phi3");
  EXPECT_EQ(guess({}, "llama", "zephyr-7b-beta"), "zephyr");
  EXPECT_EQ(guess({}, "llama", "Mistral-7B-Instruct-v0.1"), "mistral-v1");
  EXPECT_EQ(guess({}, "llama", "LLaMA v2"), "llama2");
  EXPECT_EQ(guess({}, "llama", "my-chat-model", "llama"), "llama2");
  EXPECT_EQ(guess({}, "gpt2", "something"), "alpaca");
}

TEST(ChatTemplateGguf, LlamaTwoWithoutTemplateGetsTheLlama2Builtin) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  const auto gguf = GgufFile::open(path);
  ASSERT_FALSE(gguf->get_string("tokenizer.chat_template").has_value());
  const ChatTemplate t = ChatTemplate::from_gguf(*gguf);
  EXPECT_EQ(t.name(), "llama2");
  EXPECT_EQ(t.bos_token(), "<s>");
  EXPECT_EQ(t.eos_token(), "</s>");
  EXPECT_EQ(t.render(kChat, true), families()[0].expected_with_prompt);
}

// A GGUF v3 with no tensors and just the metadata ChatTemplate reads.
std::string write_chat_gguf(const std::string& file, const std::optional<std::string>& chat_template,
                            const std::vector<std::string>& tokens, std::uint32_t bos, std::uint32_t eos,
                            const std::string& name = "test model") {
  std::string b;
  const auto u32 = [&](std::uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  const auto u64 = [&](std::uint64_t v) { b.append(reinterpret_cast<const char*>(&v), 8); };
  const auto str = [&](const std::string& v) {
    u64(v.size());
    b += v;
  };
  const auto kv_str = [&](const std::string& k, const std::string& v) {
    str(k);
    u32(static_cast<std::uint32_t>(GgufType::String));
    str(v);
  };
  const auto kv_u32 = [&](const std::string& k, std::uint32_t v) {
    str(k);
    u32(static_cast<std::uint32_t>(GgufType::U32));
    u32(v);
  };
  b += "GGUF";
  u32(3);
  u64(0);                           // tensors
  u64(chat_template ? 6 : 5);       // metadata keys
  kv_str("general.architecture", "llama");
  kv_str("general.name", name);
  str("tokenizer.ggml.tokens");
  u32(static_cast<std::uint32_t>(GgufType::Array));
  u32(static_cast<std::uint32_t>(GgufType::String));
  u64(tokens.size());
  for (const std::string& t : tokens) str(t);
  kv_u32("tokenizer.ggml.bos_token_id", bos);
  kv_u32("tokenizer.ggml.eos_token_id", eos);
  if (chat_template) kv_str("tokenizer.chat_template", *chat_template);
  while (b.size() % 32 != 0) b += '\0';
  const std::string path = test::temp_dir() + "/" + file;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << b;
  return path;
}

TEST(ChatTemplateGguf, UsesTheTemplateTheFileCarries) {
  const std::string path = write_chat_gguf("with_template.gguf", kPhi3Mini, {"<unk>", "<s>", "<|endoftext|>"}, 1, 2);
  const ChatTemplate t = ChatTemplate::from_gguf(*GgufFile::open(path));
  EXPECT_EQ(t.name(), "gguf");
  EXPECT_EQ(t.source(), kPhi3Mini);
  EXPECT_EQ(t.eos_token(), "<|endoftext|>");
  EXPECT_EQ(t.render(kChat, false), families()[7].expected_without_prompt);
}

TEST(ChatTemplateGguf, WithoutTemplateGuessesFromTheVocabulary) {
  const std::string path = write_chat_gguf("chatml_tokens.gguf", std::nullopt, {"<unk>", "<s>", "</s>", "<|im_start|>"}, 1, 2);
  const ChatTemplate t = ChatTemplate::from_gguf(*GgufFile::open(path));
  EXPECT_EQ(t.name(), "chatml");
  EXPECT_EQ(ChatTemplate::hints_from_gguf(*GgufFile::open(path)).tokens_present, std::vector<std::string>{"<|im_start|>"});
}

TEST(ChatTemplateGguf, BadTemplateOrTokenIdsNameTheFileAndKey) {
  const std::string bad = write_chat_gguf("bad_template.gguf", std::string("{% for x in %}"), {"<s>", "</s>"}, 0, 1);
  try {
    ChatTemplate::from_gguf(*GgufFile::open(bad));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad + ": tokenizer.chat_template: chat template: line 1:13: "), std::string::npos)
        << e.what();
  }
  const std::string bad_id = write_chat_gguf("bad_bos.gguf", std::string("x"), {"<s>", "</s>"}, 7, 1);
  try {
    ChatTemplate::from_gguf(*GgufFile::open(bad_id));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.bos_token_id = 7 is outside the vocabulary of 2 tokens"),
              std::string::npos)
        << e.what();
  }
}

TEST(ChatTemplateErrors, ParseErrorsAreOneLineWithPosition) {
  try {
    ChatTemplate("{% for m in messages %}\n{{ m.content | nosuchfilter }}", "", "");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "chat template: line 2:16: no filter named 'nosuchfilter'");
  }
}

// ---- Jinja2 as the oracle -----------------------------------------------------------------------

std::optional<ordered_json> run_oracle(const ordered_json& cases) {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  const std::string script = std::string(src ? src : ".") + "/tests/chat/chat_template_oracle.py";
  if (!std::ifstream(script).good()) return std::nullopt;  // not run from the source tree (KILN_SOURCE_DIR)
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/chat_oracle_in.json") << cases.dump();
  std::string ignored;
  const int rc = test::run_command("/usr/bin/python3 " + script + " < " + dir + "/chat_oracle_in.json > " + dir +
                                       "/chat_oracle_out.json",
                                   &ignored, true);
  if (rc == 3 || rc == 127) return std::nullopt;
  if (rc != 0) {
    ADD_FAILURE() << "the Jinja2 oracle failed with exit code " << rc;
    return std::nullopt;
  }
  std::ifstream f(dir + "/chat_oracle_out.json");
  return ordered_json::parse(f);
}

ordered_json messages_json(std::span<const ChatMessage> chat) {
  ordered_json out = ordered_json::array();
  for (const ChatMessage& m : chat) {
    ordered_json j = {{"role", m.role}, {"content", m.content}};
    if (m.name) j["name"] = *m.name;
    if (m.tool_call_id) j["tool_call_id"] = *m.tool_call_id;
    if (m.tool_calls) j["tool_calls"] = *m.tool_calls;
    out.push_back(j);
  }
  return out;
}

TEST(ChatTemplateOracle, EveryFamilyMatchesJinja2ByteForByte) {
  const std::vector<ChatMessage> spaced = {
      {"system", "  Be brief.\n", {}, {}, {}},
      {"user", " Héllo\n\twörld ", {}, {}, {}},
      {"assistant", "\n  Hi!  \n", {}, {}, {}},
      {"user", "{{ not a template }} {% raw %}", {}, {}, {}},
  };
  const std::vector<ChatMessage> no_system(kChat.begin() + 1, kChat.end());
  struct Run {
    const Family* fam;
    std::vector<ChatMessage> chat;
    bool gen;
    ordered_json extra;
  };
  std::vector<Run> runs;
  const ordered_json tools = {{"tools", ordered_json::array({kWeatherTool})}};
  for (const Family& fam : families()) {
    for (const bool gen : {false, true}) {
      runs.push_back({&fam, kChat, gen, ordered_json::object()});
      runs.push_back({&fam, spaced, gen, ordered_json::object()});
      runs.push_back({&fam, no_system, gen, ordered_json::object()});
      runs.push_back({&fam, tool_chat(), gen, tools});
      runs.push_back({&fam, no_system, gen, tools});
    }
  }
  ordered_json request = ordered_json::array();
  for (const Run& r : runs) {
    ordered_json vars = {{"messages", messages_json(r.chat)},
                         {"tools", nullptr},
                         {"documents", nullptr},
                         {"add_generation_prompt", r.gen},
                         {"bos_token", r.fam->bos},
                         {"eos_token", r.fam->eos}};
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) vars[it.key()] = it.value();
    request.push_back({{"template", *r.fam->source}, {"variables", vars}});
  }
  const std::optional<ordered_json> results = run_oracle(request);
  if (!results) GTEST_SKIP() << "python3-jinja2 is not installed: the templates were not compared with Jinja2";
  ASSERT_EQ(results->size(), runs.size());
  int compared = 0, raised = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Run& r = runs[i];
    SCOPED_TRACE(std::string(r.fam->name) + " run " + std::to_string(i));
    const ChatTemplate t(*r.fam->source, r.fam->bos, r.fam->eos);
    const std::string ours = render_or_error(t, r.chat, r.gen, r.extra);
    const ordered_json& o = (*results)[i];
    if (o.contains("output")) {
      EXPECT_EQ(ours, o["output"].get<std::string>());
      ++compared;
    } else {
      // Both must refuse, and a raise_exception must carry the same message.
      const std::string err = o["error"].get<std::string>();
      EXPECT_EQ(ours.rfind("ERROR: ", 0), 0u) << "kiln rendered but Jinja2 failed with " << err << "\nkiln: " << ours;
      const std::string prefix = "TemplateRaised: ";
      if (err.rfind(prefix, 0) == 0) {
        EXPECT_NE(ours.find("raise_exception: " + err.substr(prefix.size())), std::string::npos) << ours;
      }
      ++raised;
    }
  }
  EXPECT_GT(compared, 60);
  std::cout << "chat templates: " << compared << " renders identical to Jinja2, " << raised
            << " refused by both\n";
}

}  // namespace
}  // namespace kiln
