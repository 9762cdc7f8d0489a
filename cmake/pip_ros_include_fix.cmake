# Passed with -DCMAKE_PROJECT_INCLUDE=<this file> when building against the PyPI ros-* wheels in a venv.
#
# Why, 1: the wheels' <pkg>__rosidl_generator_pyExport.cmake files hard-code the wheel builder's Python and NumPy
# include directories (/opt/python/cp311-cp311/...), which do not exist here, so compiling our generated Python
# type support fails. We re-point those IMPORTED targets to the Python/NumPy that CMake finds (the venv's).
# Why, 2: rosidl_generator_py gives our exported <pkg>__rosidl_generator_py library the NumPy include directory
# as a PUBLIC include. With the venv inside the source tree (./.venv) that path lies in the source directory, and
# CMake refuses to export it ("which is prefixed in the source directory"). We mark such venv paths
# $<BUILD_INTERFACE:...>: they are used for this build and left out of the installed CMake config.
#
# Both run deferred to the end of the top-level CMakeLists, when all targets exist. Nothing in the venv is edited.
# On a real ROS install no target mentions /opt/python/ or a venv in the source tree, and this does nothing.

function(_vsseg_fix_pip_ros_python_includes)
  # 1. IMPORTED targets (from find_package) pointing at the wheel builder's /opt/python/.
  get_property(_imported DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_broken "")
  foreach(_target IN LISTS _imported)
    get_target_property(_includes ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_includes AND "${_includes}" MATCHES "/opt/python/")
      list(APPEND _broken ${_target})
    endif()
  endforeach()
  if(_broken)
    find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
    foreach(_target IN LISTS _broken)
      get_target_property(_includes ${_target} INTERFACE_INCLUDE_DIRECTORIES)
      list(FILTER _includes EXCLUDE REGEX "/opt/python/")
      list(APPEND _includes ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      list(REMOVE_DUPLICATES _includes)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_includes}")
    endforeach()
    list(LENGTH _broken _count)
    message(STATUS "pip_ros_include_fix: re-pointed the Python/NumPy includes of ${_count} imported target(s) to "
                   "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
  endif()

  # 2. Our own targets exporting include paths inside a venv that lives in the source or build tree.
  set(_venv "$ENV{VIRTUAL_ENV}")
  if(NOT _venv)
    return()
  endif()
  file(REAL_PATH "${_venv}" _venv)
  file(REAL_PATH "${CMAKE_SOURCE_DIR}" _src)
  file(REAL_PATH "${CMAKE_BINARY_DIR}" _bin)
  string(FIND "${_venv}/" "${_src}/" _in_src)
  string(FIND "${_venv}/" "${_bin}/" _in_bin)
  if(NOT _in_src EQUAL 0 AND NOT _in_bin EQUAL 0)
    return()
  endif()
  get_property(_own DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY BUILDSYSTEM_TARGETS)
  set(_wrapped 0)
  foreach(_target IN LISTS _own)
    get_target_property(_includes ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _includes)
      continue()
    endif()
    set(_new "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _includes)
      if(NOT _dir MATCHES "^\\$<" AND IS_ABSOLUTE "${_dir}")
        file(REAL_PATH "${_dir}" _real)
        string(FIND "${_real}/" "${_venv}/" _in_venv)
        if(_in_venv EQUAL 0)
          set(_dir "$<BUILD_INTERFACE:${_dir}>")
          set(_changed TRUE)
        endif()
      endif()
      list(APPEND _new "${_dir}")
    endforeach()
    if(_changed)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
      math(EXPR _wrapped "${_wrapped} + 1")
    endif()
  endforeach()
  if(_wrapped)
    message(STATUS "pip_ros_include_fix: venv ${_venv} is inside the source/build tree; its include paths are "
                   "build-only in ${_wrapped} exported target(s)")
  endif()
endfunction()

# CMAKE_PROJECT_INCLUDE is read after every project() call; defer only once, from the top-level project.
# (No cmake_minimum_required here: in an included file it would change the including project's policies.)
if(CMAKE_VERSION VERSION_LESS 3.19)
  message(WARNING "pip_ros_include_fix needs CMake >= 3.19 (cmake_language(DEFER)); not applied")
elseif(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  get_property(_vsseg_fix_deferred GLOBAL PROPERTY _VSSEG_PIP_ROS_INCLUDE_FIX_DEFERRED)
  if(NOT _vsseg_fix_deferred)
    set_property(GLOBAL PROPERTY _VSSEG_PIP_ROS_INCLUDE_FIX_DEFERRED TRUE)
    cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _vsseg_fix_pip_ros_python_includes)
  endif()
endif()
