# The one dependency direction of lib/ (docs/architecture.md), checked on every quoted include:
#   - a file in lib/FOLDER includes headers of FOLDER and of the folders listed before it in
#     FOLDERS, never of one listed after it;
#   - lib/ctl (kpsctl's library) includes only core, model, protocol and ctl: kpsctl never sees
#     the store, the scheduler or the network code;
#   - every include of a kpsd header names its folder ("store/job_store.hpp").
# Run by CTest (`include_direction`) and by hand: cmake -DSOURCE_DIR=. -DFOLDERS=core,model,... -P
# cmake/check_includes.cmake. Prints every offending line and fails when there is one.
if(NOT SOURCE_DIR OR NOT FOLDERS)
  message(FATAL_ERROR "usage: cmake -DSOURCE_DIR=<repo> -DFOLDERS=<folders lowest first> -P check_includes.cmake")
endif()
get_filename_component(SOURCE_DIR "${SOURCE_DIR}" ABSOLUTE)
string(REPLACE "," ";" FOLDERS "${FOLDERS}")  # CTest passes the list comma-separated
set(ctl_may core model protocol ctl)
set(problems "")
set(checked 0)
file(GLOB_RECURSE files RELATIVE ${SOURCE_DIR}/lib ${SOURCE_DIR}/lib/*.hpp ${SOURCE_DIR}/lib/*.cpp)
list(SORT files)
foreach(rel IN LISTS files)
  string(REGEX MATCH "^[^/]+" folder "${rel}")
  if(folder STREQUAL rel)
    string(APPEND problems "lib/${rel}: a file directly in lib/, outside every folder\n")
    continue()
  endif()
  if(folder STREQUAL "ctl")
    set(allowed ${ctl_may})
  else()
    list(FIND FOLDERS ${folder} rank)
    if(rank EQUAL -1)
      string(APPEND problems "lib/${rel}: folder `${folder}` is not in the direction list\n")
      continue()
    endif()
    math(EXPR last "${rank}")
    set(allowed "")
    foreach(i RANGE 0 ${last})
      list(GET FOLDERS ${i} f)
      list(APPEND allowed ${f})
    endforeach()
  endif()
  file(STRINGS ${SOURCE_DIR}/lib/${rel} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" target "${line}")
    math(EXPR checked "${checked} + 1")
    string(REGEX MATCH "^[^/]+" to "${target}")
    if(to STREQUAL target)
      string(APPEND problems "lib/${rel}: #include \"${target}\" does not name its folder\n")
    elseif(NOT EXISTS ${SOURCE_DIR}/lib/${target})
      string(APPEND problems "lib/${rel}: #include \"${target}\": no such file in lib/\n")
    else()
      list(FIND allowed ${to} ok)
      if(ok EQUAL -1)
        string(APPEND problems
               "lib/${rel}: #include \"${target}\" goes the wrong way (${folder} may include: ${allowed})\n")
      endif()
    endif()
  endforeach()
endforeach()
if(problems)
  # Printed plain first: an error message is wrapped at 80 columns, and these are read by
  # people and matched by a test.
  message("${problems}")
  message(FATAL_ERROR "include direction: the includes above go the wrong way")
endif()
message(STATUS "include direction: ${checked} includes in lib/ go the one way")

