// The Jupyter notebook format (nbformat v4, v4.5 rules), checked in C++.
//
// Saving: prepare_for_save() validates a notebook the way nbformat.validate
// does with the v4.5 schema (cells list, cell types, sources, outputs and
// their output types, metadata objects, nbformat/nbformat_minor integers,
// cell ids, mimebundles) and normalizes it: v3 is converted to v4, v4.0-4.4
// are upgraded to v4.5, missing or duplicate cell ids are replaced, transient
// fields are removed. serialize_notebook() writes nbformat's layout.
//
// Reading: parse_stored_notebook() accepts v4 (any minor, served as stored)
// and v3 (converted to v4 on the fly, as Jupyter Server does; the file on
// disk is not changed until the next save).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace skylab::drive {

//! Validates and normalizes `nb` for storage (see above). BadRequest naming
//! the first problem, e.g. "cells[3].outputs[0]: unknown output_type 'x'".
//! On success `nb` is a valid v4.5 notebook.
Status prepare_for_save(nlohmann::json& nb);

//! The first way `nb` (a v4 notebook) breaks the v4 schema for its
//! nbformat_minor, or nullopt when it is valid. Changes nothing.
std::optional<std::string> validation_problem(const nlohmann::json& nb);

//! nbformat's file layout: keys sorted, indent 1, non-ASCII kept, sources and
//! text outputs split into lists of lines, a final newline.
std::string serialize_notebook(nlohmann::json nb);

//! Parses stored bytes for the Contents API: multi-line lists joined into
//! strings, v3 converted to v4 (metadata.orig_nbformat = 3). BadRequest when
//! the bytes are not JSON or not a v3/v4 notebook. `validation_message` gets
//! a description of schema problems (served as the model's "message", as
//! Jupyter Server does), or is cleared.
Result<nlohmann::json> parse_stored_notebook(std::string_view bytes,
                                             std::string* validation_message);

//! A new empty notebook (nbformat 4.5), as nbformat.v4.new_notebook().
nlohmann::json new_notebook();

//! Converts a v3 notebook to v4.5 in place (nbformat.v4.convert.upgrade).
Status upgrade_v3(nlohmann::json& nb);

//! Joins lists of lines back into strings (nbformat's rejoin_lines).
void rejoin_lines(nlohmann::json& nb);

}  // namespace skylab::drive
