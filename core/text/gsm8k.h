// GSM8K exactly as the EMO paper's evaluation builds it, byte for byte: the prompt
// ("Question: ...\nAnswer:"), the normalised chain-of-thought target (" <answer> So the
// answer is N."), the 8-shot STD:GSM8k context of OLMES / oe-eval, the stop sequences,
// and oe-eval's answer extraction and exact-match rule. route, finetune and eval all build
// their strings here, so every command sees the same text.
//
// Sources (docs/gsm8k-protocol.md has the details and a worked example):
//  - allenai/EMO src/offline_evals/tasks/splits_gsm8k.py: normalize_answer_str,
//    add_spaces_around_operators_no_regex, the de-duplicated suffix of
//    GSM8K_Generation_TrainVal_Base, GSM8K_Perplexity_Base.
//  - allenai/EMO src/scripts/eval/tasks.py: gsm8k_generation_8shot_merged = 8 shots of
//    STD:GSM8k; src/hf_training/data_utils.py: finetuning text = context + " " + choices[0].
//  - allenai/oe-eval oe_eval/tasks/fewshot_sources.py (STD:GSM8k), base_task.py
//    (fewshot_context), oe_eval_tasks/gsm8k.py (stop sequences, _extract_answer,
//    regexes_to_ignore), utils.py (cut_at_stop_sequence).
//
// Python `re` / `str` semantics are reproduced by hand: `\s` and strip() use Python's
// str.isspace() set (NBSP, U+2009, ... included), `\d` is Unicode Nd, `.` excludes only
// "\n". Text is UTF-8; invalid bytes are treated as ordinary non-space, non-digit units.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace emo {

// One GSM8K JSONL row: {"question": ..., "answer": "... #### N"}.
struct GsmItem {
  std::string question;
  std::string answer;
};

// One STD:GSM8k exemplar as oe-eval stores it (its answer already ends "So the answer is N.").
struct Gsm8kExemplar {
  std::string question;
  std::string answer;
  std::string short_answer;
};

// ---- data ----------------------------------------------------------------------------

// Parses one JSONL line; `file` and `line_no` go into the error message.
GsmItem gsm8k_parse_jsonl_line(const std::string& line, const std::string& file, size_t line_no);
// Reads a whole GSM8K JSONL file (blank lines skipped).
std::vector<GsmItem> gsm8k_read_jsonl(const std::string& path);

// ---- prompt and target ---------------------------------------------------------------

// The 8 STD:GSM8k chain-of-thought exemplars, verbatim from oe-eval.
const std::vector<Gsm8kExemplar>& gsm8k_std_exemplars();
int gsm8k_max_shots();       // 8: the number of STD:GSM8k exemplars
int gsm8k_paper_shots();     // 8: what gsm8k_generation_8shot_merged uses (prune, finetune, eval)

// `answer.split("####")[-1].strip()`: the text after the last "####", Python-stripped.
std::string gsm8k_short_answer(const std::string& gold_answer);

// splits_gsm8k.add_spaces_around_operators_no_regex: a space before each of + - * / =
// unless one is already there, a space after each, then "  " -> " " (one pass, as
// Python's str.replace). Note it also turns "baby-sit" into "baby - sit" and "-7" into "- 7".
std::string gsm8k_add_spaces_around_operators(const std::string& s);

// The upstream normalize_answer_str (as GSM8K_Perplexity_Base has it): drop "<<...>>",
// collapse whitespace, keep the text before the first "####", capitalise the first
// character, add "." if missing, append " So the answer is <short_answer>.", then space
// the operators. No de-duplication: an answer that already ends in the suffix gets it twice.
std::string gsm8k_normalize_answer_str(const std::string& answer, const std::string& short_answer);

// GSM8K_Generation_TrainVal_Base.normalize_answer_str (the paper's gsm8k_generation_*
// tasks): the above, then a doubled trailing "So the answer is N. So the answer is N." is
// collapsed to one. With one argument the short answer is gsm8k_short_answer(gold_answer).
std::string gsm8k_normalize_answer(const std::string& gold_answer);
std::string gsm8k_normalize_answer(const std::string& answer, const std::string& short_answer);

// doc_to_text: "Question: " + question + "\nAnswer:". The question is used verbatim (its
// double spaces stay). An empty question is an emo::Error.
std::string gsm8k_question_text(const std::string& question);

// doc_to_target of the paper's task: " " + gsm8k_normalize_answer(item.answer). The answer
// must contain "####" (else emo::Error: the suffix would be the whole answer).
std::string gsm8k_target(const GsmItem& item);

// fewshot_context with no description, no chat format: the first `num_shots` exemplars,
// each doc_to_text(ex) + " " + answer, joined by "\n\n", then "\n\n", then
// gsm8k_question_text(question). num_shots = 0 gives just the question text.
// num_shots outside [0, gsm8k_max_shots()] is an emo::Error.
std::string gsm8k_context(const std::string& question, int num_shots);

// The shared prompt builder. (prompt, completion) with prompt = gsm8k_context(question,
// num_shots), ending in "Answer:", and completion = gsm8k_target(item) = " <normalised>".
// prompt + completion is the string EMO's finetuning (data_utils.get_formatted_prompts)
// and expert selection (launch_logits) use for gsm8k_generation_*; the loss goes on the
// completion (EMO masks up to the last "Answer:" and appends EOS). The paper runs 8 shots.
std::pair<std::string, std::string> gsm8k_sft_pair(const GsmItem& item, int num_shots = 0);

// The request of EMO's gsm8k_perplexity_* tasks (GSM8K_Perplexity_Base), with its quirks:
// exemplar targets are normalised without de-duplication (each ends "So the answer is 6.
// So the answer is 6."), and the continuation is " {}".format(doc_to_target) = two spaces
// before the normalised answer. Not the paper's GSM8K number; here for byte parity.
std::pair<std::string, std::string> gsm8k_perplexity_pair(const GsmItem& item, int num_shots);

// ---- generation and scoring ----------------------------------------------------------

// oe-eval GSM8K generation_kwargs: stop at "Question:", "</s>", "<|im_end|>", "\n\n";
// greedy, at most 512 new tokens. (oe-eval also appends the tokenizer's EOS string.)
const std::vector<std::string>& gsm8k_stop_sequences();
int gsm8k_max_gen_tokens();

// oe-eval cut_at_stop_sequence: cut at the earliest occurrence of any stop sequence.
std::string gsm8k_stop_truncate(const std::string& generated);

// oe-eval GSM8K._extract_answer, exactly: join digit,digit (re.sub(r"(\d),(\d)"), so
// "1,2,3" becomes "12,3"), then the last match of [-+]?\d*\.\d+|\d+, else the whole text.
// Quirk: a negative integer loses its sign ("-7" -> "7"; "-7.5" keeps it).
std::string gsm8k_oe_extract_answer(const std::string& continuation);
// The gold label oe-eval compares with: gsm8k_oe_extract_answer(gsm8k_short_answer(gold)).
std::string gsm8k_oe_label(const std::string& gold_answer);
// exact_match_hf_evaluate(regexes_to_ignore=[",", "\$", "(?s).*#### ", "\.$"],
// ignore_case=True) on one (extracted prediction, label) pair.
bool gsm8k_oe_exact_match(const std::string& model_answer, const std::string& label);
// One document's exact_match as the paper scores it: truncate at the stop sequences,
// extract, compare with the label.
bool gsm8k_score(const std::string& generated, const std::string& gold_answer);

// A friendlier extraction for display (--generate): the number right after the last
// "the answer is" (any case) or "####", else the last number in the text; a '-' directly
// before a number counts as its sign unless it follows a digit, letter or ')'. Returned
// through gsm8k_normalize_number; nullopt when the text has no number. Not the paper's
// metric: scores comparable with the paper come from gsm8k_score.
std::optional<std::string> gsm8k_extract_answer(const std::string& generated);

// Canonical number text: drops spaces, "$" and "," and a trailing ".", a leading "+",
// leading zeros, and trailing zeros of a fraction ("18.00" -> "18", "3.50" -> "3.5",
// ".5" -> "0.5", "-0" -> "0"). Text that is not a number comes back trimmed, otherwise as is.
std::string gsm8k_normalize_number(const std::string& s);

// oe-eval bits_per_byte: -sum(log p) / (bytes * ln 2), with the NLL in nats summed over
// the target's tokens and `target_utf8_bytes` the UTF-8 length of the continuation string
// (its leading space included). For a corpus, sum the NLLs and the bytes first.
// Zero bytes is an emo::Error.
double bits_per_byte(double total_nll_nats, size_t target_utf8_bytes);

struct GsmSplitItem {
  std::string id;   // corpus id "gsm8k-train-N", or "<file stem>-N" for another file
  size_t line = 0;  // 0-based line of the GSM8K file
  GsmItem item;
};

// Every item of a GSM8K JSONL file ({"question", "answer"} with "#### N"), in file order;
// id = "<file stem>-<line from 0>". A line without the fields, an answer without "####"
// or an empty file is an emo::Error naming the file and line.
std::vector<GsmSplitItem> gsm8k_file_items(const std::string& path);

// The items of `gsm8k_path` (the shipped train.jsonl) whose corpus id
// "gsm8k-train-N" (N = line N of the file, from 0) occurs in `corpus_path` (the corpus
// train or valid split, JSONL(.gz)), in increasing N. Finetuning uses the train split,
// evaluation the valid split (743 items). An id past the end of the file, or a corpus
// text that does not contain the item's question, is an emo::Error (the two files do
// not belong together).
std::vector<GsmSplitItem> gsm8k_split_items(const std::string& gsm8k_path, const std::string& corpus_path);

}  // namespace emo
